"""The evaluation protocol registry: the built-ins in the CLI's order, lazy run functions,
refused registrations, CLI options checked before any work, per-target result files."""

from __future__ import annotations

import sys

import pytest

from varcon.evaluation import (
    CliOption,
    ProtocolSpec,
    evaluate_checkpoint,
    get_protocol,
    protocol_names,
    register_protocol,
)
from varcon.evaluation.registry import unregister_protocol


def test_builtins_in_the_cli_order():
    assert protocol_names() == ("linear", "knn", "cluster", "fewshot", "transfer", "robustness",
                                "finetune")
    assert get_protocol("transfer").section == "linear"
    assert [o.dest for o in get_protocol("robustness").options] == ["baseline"]


def test_run_functions_are_imported_when_they_run():
    spec = get_protocol("cluster")
    assert spec.run == "varcon.evaluation.protocols:run_cluster"
    from varcon.evaluation.protocols import run_cluster

    assert spec.run_function() is run_cluster


def test_unknown_protocol_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown evaluation 'knnn' \(did you mean knn"):
        get_protocol("knnn")


def test_an_option_the_protocol_does_not_take_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="'knn' takes no option; got baseline"):
        evaluate_checkpoint("knn", tmp_path / "no-such-run", baseline="x")
    assert get_protocol("knn").check_options({"baseline": None}) == {}
    assert get_protocol("robustness").check_options({}) == {"baseline": None}


@pytest.mark.parametrize(("changes", "message"), [
    ({"name": "report"}, "protocol name 'report'"),
    ({"name": "Knn two"}, "protocol name"),
    ({"section": "nosuch"}, "reads config section 'nosuch', which does not exist"),
    ({"run": "no_colon"}, "run must be a function or 'module:function'"),
    ({"results_file": "a*b*.json"}, "at most one"),
    ({"options": (CliOption("-x", "?"),)}, "must start with '--'"),
])
def test_bad_registrations_are_refused(changes, message):
    spec = ProtocolSpec(**{"name": "toy", "help": "?", "run": lambda s: {}, "section": "knn",
                           **changes})
    with pytest.raises(ValueError, match=message):
        register_protocol(spec)
    assert "toy" not in protocol_names()


def test_a_name_is_registered_once_unless_overwritten():
    spec = ProtocolSpec("toy", "?", lambda s: {}, "knn")
    register_protocol(spec)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_protocol(ProtocolSpec("toy", "other", lambda s: {}, "knn"))
        register_protocol(ProtocolSpec("toy", "other", lambda s: {}, "knn"), overwrite=True)
        assert get_protocol("toy").help == "other"
    finally:
        unregister_protocol("toy")


def test_per_target_files_and_columns():
    transfer = get_protocol("transfer")
    assert transfer.per_target and transfer.match_file("transfer_cifar100.json") == "cifar100"
    assert transfer.match_file("linear.json") is None
    spec = ProtocolSpec("toy", "?", lambda s: {}, "knn",
                        columns={"acc": lambda r: r["acc"], "gone": lambda r: r["missing"]})
    [col] = spec.report_values({"acc": 50.0})
    assert (col.key, col.label, col.value) == ("toy.acc", "acc", 50.0)


def test_the_registry_does_not_load_the_evaluation_code():
    import subprocess

    code = ("import sys, varcon.evaluation as E; E.protocol_names(); "
            "print(sorted(m for m in ('sklearn', 'varcon.evaluation.session') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
