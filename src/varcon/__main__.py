"""``python -m varcon ...`` (and ``torchrun ... -m varcon ...``)."""

from varcon.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
