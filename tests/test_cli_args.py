"""Command lines the CLI reads before Hydra: options with values, sweeps with `--cfg`."""

from __future__ import annotations

from pretrainer.cli_sweeps import options_first, override_args, sweep_jobs
from tests.faults.conftest import invoke_cli


def test_option_values_are_not_overrides():
    args = ["-m", "seed=0,1", "--cfg", "job", "--package", "trainer", "objective=mlm", "--resolve"]
    assert override_args(args) == ["seed=0,1", "objective=mlm"]


def test_options_go_before_the_overrides_so_argparse_reads_them_as_one_run():
    args = ["seed=0", "-m", "objective=mlm,clm", "--cfg", "job", "arch=decoder", "--resolve"]
    assert options_first(args) == ["-m", "--cfg", "job", "--resolve", "seed=0", "objective=mlm,clm", "arch=decoder"]


def test_an_option_after_the_first_override_does_not_split_the_overrides(capsys, tmp_path, monkeypatch):
    # `seed=3 --cfg job trainer.lr=0.02`: argparse alone would refuse the override after the option.
    monkeypatch.chdir(tmp_path)
    assert invoke_cli("train", "seed=3", "--cfg", "job", "trainer.lr=0.02") == 0
    out = capsys.readouterr().out
    assert "\nseed: 3\n" in out and "lr: 0.02" in out


def test_sweep_jobs_expand_in_hydras_order():
    assert sweep_jobs(["seed=0,1", "objective=mlm,clm", "arch=decoder"]) == [
        ["seed=0", "objective=mlm", "arch=decoder"], ["seed=0", "objective=clm", "arch=decoder"],
        ["seed=1", "objective=mlm", "arch=decoder"], ["seed=1", "objective=clm", "arch=decoder"]]


def test_a_sweep_with_cfg_job_prints_every_jobs_config(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke_cli("train", "-m", "seed=0,1", "trainer.lr=0.01", "--cfg", "job") == 0
    out = capsys.readouterr().out
    assert "# job 1: seed=0 trainer.lr=0.01" in out and "# job 2: seed=1 trainer.lr=0.01" in out
    assert out.count("lr: 0.01") == 2 and "\nseed: 1\n" in out
    assert not (tmp_path / "multirun").exists()  # printing runs nothing


def test_the_cli_bounds_openmp_spinning_unless_the_user_chose():
    """GOMP_SPINCOUNT=1000 is set before torch (and OpenMP) loads, only when neither the wait
    policy nor the spin count is set; a user's own value stays."""
    import os
    import subprocess
    import sys

    probe = ("import os, sys; import pretrainer.cli; "
             "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    cases = (({}, "1000 None False"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "None ACTIVE False"),
             ({"GOMP_SPINCOUNT": "50"}, "50 None False"))
    for chosen, expected in cases:
        result = subprocess.run([sys.executable, "-c", probe], env=env | chosen, capture_output=True, text=True,
                                timeout=60)
        assert result.stdout.strip() == expected, result.stderr


def test_help_and_printing_the_config_do_not_import_torch(tmp_path):
    """Start-up stays light on paths that do not train (checked in a fresh interpreter)."""
    import subprocess
    import sys

    commands = (["--help"], ["train", "--help"], ["train", "--cfg", "job"], ["train", "-m", "seed=0,1", "--cfg", "job"])
    for args in commands:
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "pretrainer.cli", *args], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
        assert "hydra" in imported or args == ["--help"]  # the import log is read
        assert "torch" not in imported, args


def test_version_prints_the_package_version(capsys):
    from pretrainer import __version__

    assert invoke_cli("--version") == 0
    assert capsys.readouterr().out.strip() == f"pretrainer {__version__}"


def test_train_help_lists_groups_as_the_command_line_spells_them(capsys):
    assert invoke_cli("train", "--help", "objective=clm") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    finetune = next(line for line in lines if line.startswith("finetune: "))
    assert "glue/sst2" in finetune and "synthetic" in finetune  # finetune=glue/sst2 is the form that works
    assert not any(line.startswith("finetune/glue") for line in lines)
    assert any(line.startswith("arch/size: ") and "base" in line for line in lines)  # a group of its own
    assert "== Config (with the overrides given) ==" in out and "name: clm" in out  # then the composed config


def test_a_bare_info_option_stays_after_the_overrides():
    assert options_first(["seed=3", "--info"]) == ["seed=3", "--info"]
    assert options_first(["seed=3", "--info", "config"]) == ["--info", "config", "seed=3"]


def test_hydra_groups_packages_and_shell_completion_are_not_unknown_keys():
    from pretrainer.cli import CONF_DIR
    from pretrainer.cli_sweeps import check_override_keys

    check_override_keys(CONF_DIR, ["hydra/job_logging=disabled", "hydra/sweeper=basic", "arch@foo=encoder"])
    check_override_keys(CONF_DIR, ["-sc", "install=bash"])


def test_sweep_jobs_follow_hydras_order_when_the_command_line_overrides_a_preset():
    from pretrainer.cli import CONF_DIR
    from pretrainer.cli_sweeps import expanded_jobs

    jobs = expanded_jobs(CONF_DIR, ["experiment=families", "objective=mlm,clm"])  # the preset sweeps objective, seed
    assert [job[:2] for job in jobs[:4]] == [["objective=mlm", "seed=0"], ["objective=mlm", "seed=1"],
                                             ["objective=mlm", "seed=2"], ["objective=clm", "seed=0"]]
    assert len(expanded_jobs(CONF_DIR, ["seed=0,1", "seed=2,3"])) == 2  # a repeated key: the last one counts


def test_a_sweep_whose_config_does_not_compose_is_one_line(capsys):
    assert invoke_cli("plan", "-m", "trainer=gpux", "seed=0,1") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Could not find 'trainer/gpux'" in err and "Traceback" not in err


def test_an_optimizer_set_as_a_key_against_its_group_is_refused_with_the_group_to_use(capsys):
    # The key alone would leave the adafactor group's lr 1e-2 and weight_decay 0 on AdamW.
    assert invoke_cli("plan", "objective=t5_span", "trainer.optimizer=adamw") == 2
    err = capsys.readouterr().err
    assert "group is adafactor" in err and "trainer/optimizer=adamw" in err and "Traceback" not in err
    assert invoke_cli("plan", "objective=t5_span", "trainer/optimizer=adamw") == 0
    assert invoke_cli("plan", "objective=mlm", "trainer.optimizer=adamw") == 0  # the key agrees with the group
