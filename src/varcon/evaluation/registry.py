"""Evaluation protocols by name: one :class:`ProtocolSpec` per protocol, one registration.

A protocol is what ``varcon <name> --checkpoint RUN`` runs: a function of an
:class:`~varcon.evaluation.session.EvalSession` that writes one result file into the
evaluation folder and returns its results. Everything that lists protocols iterates over this
registry: :func:`~varcon.evaluation.commands.evaluate_checkpoint`, the CLI's subcommands and
their help, and ``varcon report`` (which files to read, the columns each protocol's results
give, the "not run" lines and the commands that produce them).

Adding a protocol is one :func:`register_protocol` call (``docs/extending.md``)::

    register_protocol(ProtocolSpec(
        name="centroid", help="nearest class-mean accuracy of frozen features",
        run=run_centroid, section="centroid", config=CentroidConfig,
        columns={"centroid top-1 (%)": lambda r: r["top1"]}))

This module imports nothing heavy: a built-in protocol's run function is named as
``"module:function"`` and imported when it runs (robustness needs an optional package,
fine-tuning pulls in the training loop's pieces), so the CLI and the report read the registry
without loading the evaluation code.
"""

from __future__ import annotations

import importlib
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from varcon._registry import Registry

__all__ = [
    "CliOption",
    "ProtocolSpec",
    "ReportColumn",
    "all_protocols",
    "get_protocol",
    "protocol_names",
    "register_protocol",
    "unregister_protocol",
]

# The CLI's other subcommands: a protocol may not take their names.
_RESERVED = ("pretrain", "figures", "report", "configs", "export", "embed")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")

RunFunction = Callable[..., dict[str, Any]]
ColumnFunction = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class CliOption:
    """An extra command-line option of a protocol, passed to its run function by name:
    ``CliOption("--baseline", "run whose ...")`` gives ``run(session, baseline=...)``
    (``None`` when not given)."""

    flag: str
    help: str

    @property
    def dest(self) -> str:
        """The keyword argument: ``--baseline-run`` -> ``baseline_run``."""
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class ReportColumn:
    """One value a protocol's results give the report.

    ``key`` names it in :func:`varcon.reporting.run_metrics` (``"knn.top1.20"``), ``label``
    heads its column; ``main`` columns are in the per-run tables' first rows, the others after
    them; ``order`` sorts the protocol's columns among themselves. ``headline``: a short name
    (``"kNN k=20"``) makes the column a candidate for the report's headline table and figure,
    where each protocol shows its first candidate (by ``order``) that some run has;
    ``better``: which way is better, for the bold best value of a column.
    """

    key: str
    label: str
    value: Any
    decimals: int = 2
    main: bool = True
    order: tuple[Any, ...] = ()
    headline: str = ""
    better: Literal["higher", "lower"] = "higher"


@dataclass(frozen=True)
class ProtocolSpec:
    """An evaluation protocol.

    * ``name``: the CLI command (``varcon <name>``) and the key ``evaluate_checkpoint`` takes.
    * ``help``: the one-line help of the command.
    * ``run``: ``run(session, **options) -> results`` (rank 0's results; ``{}`` on other
      ranks where the work is rank 0's), or ``"module:function"`` naming it, imported when the
      protocol runs.
    * ``section``: the config section the protocol reads (``cfg.<section>``; overrides
      ``<section>.key=value``). ``config``: a dataclass for a *new* section of that name,
      registered with :func:`varcon.runtime.config.register_config_section`; leave it
      ``None`` to read an existing section.
    * ``options``: extra command-line options (:class:`CliOption`), passed to ``run``.
    * ``results_file``: the file ``run`` writes in the evaluation folder (default
      ``<name>.json``, with the envelope of :func:`~varcon.evaluation.results.write_result`);
      with one ``*`` (``transfer_*.json``) one file per target, read as ``<name>:<target>``.
    * ``label``: how the report names the protocol ("kNN"); default ``name``.
    * ``columns``: report columns, label -> function of the results object of the file
      (``{"centroid top-1 (%)": lambda r: r["top1"]}``); a value that is not a number is left
      out. ``report_columns``: for columns that depend on the results (one per k, per
      algorithm): ``(results, target) -> [ReportColumn, ...]``.
    * ``report_order``: where the protocol's columns go in the report (built-ins 0 to 5;
      by default the others follow them, in registration order).
    * ``command_args``: what the report's command for a missing result adds after
      ``varcon <name> --checkpoint RUN``; ``{target}`` is the target of a per-target file.
    """

    name: str
    help: str
    run: str | RunFunction
    section: str
    config: type | None = None
    options: tuple[CliOption, ...] = ()
    results_file: str = ""
    label: str = ""
    columns: Mapping[str, ColumnFunction] = field(default_factory=dict)
    report_columns: Callable[[Mapping[str, Any], str | None], Iterable[ReportColumn]] | None = None
    report_order: float = 100.0
    command_args: str = ""

    # -------------------------------------------------------------------------- running
    def run_function(self) -> RunFunction:
        """The run function (imported now when ``run`` names it)."""
        if callable(self.run):
            return self.run
        module, _, attr = self.run.partition(":")
        return getattr(importlib.import_module(module), attr)

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of ``run`` for the CLI ``options`` (by :attr:`CliOption.dest`;
        an option not given is ``None``). ``ValueError`` for an option the protocol does not
        take; ``None`` values of other options are ignored (the CLI passes all it knows)."""
        known = {o.dest for o in self.options}
        unknown = sorted(k for k, v in options.items() if k not in known and v is not None)
        if unknown:
            takes = ", ".join(o.flag for o in self.options) or "no option"
            raise ValueError(f"evaluation {self.name!r} takes {takes}; got "
                             f"{', '.join(unknown)}")
        return {k: options.get(k) for k in sorted(known)}

    def __call__(self, session: Any, **options: Any) -> dict[str, Any]:
        """Run the protocol on ``session`` with its CLI ``options`` (:meth:`check_options`)."""
        return self.run_function()(session, **self.check_options(options))

    # ------------------------------------------------------------------------ reporting
    @property
    def file(self) -> str:
        """The results file name (pattern with ``*`` for per-target files)."""
        return self.results_file or f"{self.name}.json"

    @property
    def per_target(self) -> bool:
        return "*" in self.file

    @property
    def display_name(self) -> str:
        return self.label or self.name

    def match_file(self, filename: str) -> str | None:
        """The target of a per-target file name (``transfer_cifar100.json`` -> ``cifar100``),
        else ``None``."""
        prefix, _, suffix = self.file.partition("*")
        match = re.fullmatch(re.escape(prefix) + "(.+)" + re.escape(suffix), filename)
        return match.group(1) if match else None

    def report_values(self, results: Mapping[str, Any], target: str | None = None
                      ) -> list[ReportColumn]:
        """Every column the results object of one file gives the report: ``columns`` (in
        their order), then ``report_columns``."""
        values: list[ReportColumn] = []
        where = f".{target}" if target is not None else ""
        for i, (label, fn) in enumerate(self.columns.items()):
            try:
                value = fn(results)
            except (KeyError, IndexError, TypeError, ValueError):
                continue  # the file does not report it: shown as "–"
            shown = f"{label} ({target})" if target is not None else label
            values.append(ReportColumn(f"{self.name}{where}.{label}", shown, value,
                                       order=(*((target,) if target is not None else ()), i)))
        if self.report_columns is not None:
            values.extend(self.report_columns(results, target))
        return values

    def command(self, run_dir: str, target: str | None = None) -> str:
        """The command that writes this protocol's results for ``run_dir``."""
        text = f"varcon {self.name} --checkpoint {shlex.quote(str(run_dir))}"
        if self.command_args:
            text += " " + self.command_args.format(target=target or "...")
        return text


_PROTOCOLS: Registry[ProtocolSpec] = Registry("evaluation")


def register_protocol(spec: ProtocolSpec, *, overwrite: bool = False) -> ProtocolSpec:
    """Add ``spec`` (and its new config section, when it has one); returns it.

    The CLI has ``varcon <spec.name>`` from then on (for parsers built later), ``varcon
    report`` reads ``spec.file`` and shows ``spec.columns``. ``ValueError`` for a name the CLI
    cannot take, a name already registered (unless ``overwrite``), a config section that
    does not exist, or a malformed option or results file.
    """
    if not isinstance(spec, ProtocolSpec):
        raise TypeError(f"register_protocol takes a ProtocolSpec, got {type(spec).__name__}")
    if not isinstance(spec.name, str) or not _NAME_RE.match(spec.name) \
            or spec.name in _RESERVED:
        raise ValueError(f"protocol name {spec.name!r}: use lower-case letters, digits, '-' "
                         f"and '_', starting with a letter, and none of {', '.join(_RESERVED)}")
    if not (callable(spec.run) or (isinstance(spec.run, str) and ":" in spec.run)):
        raise ValueError(f"protocol {spec.name!r}: run must be a function or "
                         f"'module:function', got {spec.run!r}")
    if spec.file.count("*") > 1 or not spec.file.endswith(".json") or "/" in spec.file:
        raise ValueError(f"protocol {spec.name!r}: results_file {spec.file!r} must be a .json "
                         "file name in the evaluation folder, with at most one '*'")
    for option in spec.options:
        if not option.flag.startswith("--") or option.dest in ("checkpoint", "output_dir"):
            raise ValueError(f"protocol {spec.name!r}: option {option.flag!r} must start with "
                             "'--' and not be --checkpoint or --output-dir")
    from varcon.runtime.config import config_sections, register_config_section

    if spec.config is not None:
        register_config_section(spec.section, spec.config, overwrite=overwrite)
    elif spec.section not in config_sections():
        raise ValueError(f"protocol {spec.name!r} reads config section {spec.section!r}, which "
                         f"does not exist ({', '.join(config_sections())}); give its dataclass "
                         "as config= to add it")
    return _PROTOCOLS.register(spec.name, spec, overwrite=overwrite)


def unregister_protocol(name: str) -> None:
    """Remove a protocol (and the config section it added), for tests and plugins."""
    spec = _PROTOCOLS.get(name) if name in _PROTOCOLS else None
    _PROTOCOLS.unregister(name)
    if spec is not None and spec.config is not None:
        from varcon.runtime.config import unregister_config_section

        unregister_config_section(spec.section)


def get_protocol(name: str) -> ProtocolSpec:
    """The protocol called ``name``; ``ValueError`` naming the choices otherwise."""
    return _PROTOCOLS.get(name)


def protocol_names() -> tuple[str, ...]:
    """The protocols' names in registration order (the CLI's order)."""
    return _PROTOCOLS.names()


def all_protocols() -> list[ProtocolSpec]:
    """The protocols in registration order."""
    return [spec for _, spec in _PROTOCOLS.items()]
