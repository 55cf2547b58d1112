"""Command line: ``varcon pretrain`` and ``varcon linear`` (also ``python -m varcon``)."""
