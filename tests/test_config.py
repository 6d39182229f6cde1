"""Config composition: every option of every group, and the errors users see."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from pretrainer.cli import CONF_DIR
from pretrainer.config import OBJECTIVE_ARCHS, ConfigError

GROUPS = ["tokenizer", "arch", "arch/size", "objective", "data", "finetune", "trainer", "trainer/optimizer", "logger"]
REQUIRED = {"data/text_files": ["data.paths=[x.txt]"], "data/hub": ["data.name=some/dataset"],
            "finetune/files": ["finetune.train_file=train.csv", "finetune.test_file=test.csv"]}


def options(group: str) -> list[str]:
    """The group's options; `finetune` also has the nested `glue/<task>` ones."""
    root = Path(CONF_DIR) / group
    nested = root.glob("glue/*.yaml") if group == "finetune" else []
    return sorted([p.stem for p in root.glob("*.yaml")] + [f"glue/{p.stem}" for p in nested])


def objective_for(arch: str) -> str:
    return next(name for name, archs in OBJECTIVE_ARCHS.items() if archs[0] == arch)


def written_sections(group: str, option: str) -> dict[str, dict]:
    """{config section: values} a group file sets; a `_global_` file names its sections."""
    path = Path(CONF_DIR) / group / f"{option}.yaml"
    written = OmegaConf.to_container(OmegaConf.load(path))
    written.pop("defaults", None)
    if path.read_text().startswith("# @package _global_"):
        return written
    return {group.split("/")[0]: written}


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_of_every_group_composes_to_what_its_file_says(compose_config, group, option):
    overrides = [f"{group}={option}", *REQUIRED.get(f"{group}/{option}", [])]
    if group == "arch":
        overrides.append(f"objective={objective_for(option)}")
    cfg = compose_config(*overrides, tiny=False)
    for section_name, values in written_sections(group, option).items():
        section = getattr(cfg, section_name)
        required = {o.split("=")[0] for o in REQUIRED.get(f"{group}/{option}", [])}
        for key, value in values.items():
            if f"{section_name}.{key}" in required or str(value).startswith("${"):  # set above, or interpolated
                continue
            assert getattr(section, key) == value, f"{group}={option}: {section_name}.{key}"


@pytest.mark.parametrize("objective", sorted(OBJECTIVE_ARCHS))
def test_objective_picks_its_natural_architecture_unless_arch_is_given(compose_config, objective):
    assert compose_config(f"objective={objective}").arch.name == OBJECTIVE_ARCHS[objective][0]
    for arch in ("encoder", "decoder", "encoder_decoder"):
        if arch not in OBJECTIVE_ARCHS[objective]:
            with pytest.raises(ConfigError, match=f"compatible architectures: {OBJECTIVE_ARCHS[objective][0]}"):
                compose_config(f"objective={objective}", f"arch={arch}")


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), f"conf/{group} is empty"


def test_size_preset_sets_shape_and_field_override_wins(compose_config):
    small = compose_config("arch/size=small", tiny=False)
    assert (small.arch.n_layer, small.arch.d_model) == (4, 512)
    custom = compose_config("arch/size=small", "arch.n_layer=3", tiny=False)
    assert (custom.arch.n_layer, custom.arch.d_model) == (3, 512)


def test_typo_in_key_fails_at_compose(compose_config):
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("trainer.learning_rate=1e-3")
    assert "learning_rate" in str(error.value.__cause__) and "TrainerConfig" in str(error.value.__cause__)


def test_appended_unknown_key_is_rejected_not_ignored(compose_config):
    with pytest.raises(ConfigError, match=r"unknown key trainer.learning_rate; valid keys: device, .*lr"):
        compose_config("+trainer.learning_rate=1e-3")


def test_wrong_type_fails_at_compose(compose_config):
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("trainer.lr=fast")
    assert isinstance(error.value.__cause__, ValidationError)


def test_unknown_option_lists_valid_ones(compose_config):
    with pytest.raises(MissingConfigException) as error:
        compose_config("objective=nope")
    assert "clm" in str(error.value) and "mlm" in str(error.value)


@pytest.mark.parametrize("objective", sorted(OBJECTIVE_ARCHS))
def test_t5_span_trains_with_t5s_adafactor_and_every_other_objective_with_adamw(compose_config, objective):
    # Under AdamW at lr 2e-3 the t5_span encoder collapsed to one shared vector (README: the embedded benchmark).
    trainer = compose_config(f"objective={objective}", tiny=False).trainer
    if objective == "t5_span":
        assert (trainer.optimizer, trainer.lr, trainer.weight_decay) == ("adafactor", 1e-2, 0.0)
    else:
        assert (trainer.optimizer, trainer.lr) == ("adamw", 2e-3)


def test_optimizer_choice_and_lr_on_the_command_line_win_over_the_objectives(compose_config):
    assert compose_config("objective=t5_span", "trainer/optimizer=adamw", tiny=False).trainer.lr == 2e-3
    assert compose_config("objective=t5_span", "trainer.lr=3e-3").trainer.lr == 3e-3
    on_gpu = compose_config("objective=t5_span", "trainer=gpu", tiny=False).trainer
    assert (on_gpu.optimizer, on_gpu.lr) == ("adafactor", 1e-2)  # the optimizer group's lr, not trainer/gpu's 5e-4


def test_adafactor_under_fsdp_is_refused_at_compose_time(compose_config):
    with pytest.raises(ConfigError, match="trainer.parallel=ddp"):
        compose_config("objective=t5_span", "trainer.parallel=fsdp")


def test_invalid_choice_names_the_valid_choices(compose_config):
    with pytest.raises(ConfigError, match="cosine, linear, constant"):
        compose_config("trainer.schedule=cos")


@pytest.mark.parametrize("objective,arch", [("clm", "encoder"), ("mlm", "decoder")])
def test_incompatible_objective_and_arch_names_compatible_archs(compose_config, objective, arch):
    with pytest.raises(ConfigError) as error:
        compose_config(f"objective={objective}", f"arch={arch}")
    message = str(error.value)
    assert f"objective={objective}" in message
    assert all(name in message for name in OBJECTIVE_ARCHS[objective])


def test_prefix_lm_gives_t5_buckets_to_the_right_and_only_a_decoder_takes_them(compose_config):
    assert compose_config("objective=prefix_lm").arch.relative_bidirectional
    assert not compose_config("objective=clm").arch.relative_bidirectional
    with pytest.raises(ConfigError, match="relative_bidirectional applies to arch=decoder, not arch=encoder_decoder"):
        compose_config("objective=t5_span", "arch.relative_bidirectional=true")  # HF T5's decoder: one-directional


def test_block_longer_than_model_fails(compose_config):
    with pytest.raises(ConfigError, match="exceeds arch.max_len"):
        compose_config("data.block_size=256", "arch.max_len=128")


def test_missing_paths_for_text_files_is_explained(compose_config):
    with pytest.raises(Exception, match="paths"):
        compose_config("data=text_files")


@pytest.mark.parametrize("override, source, chosen", [
    ("data.paths=[my_corpus.txt]", "data=text_files", "synthetic corpus"),
    ("data.name=wikitext", "data=hub", "synthetic corpus"),
    ("data.streaming=true", "data=hub", "synthetic corpus"),
    ("finetune.train_file=train.csv", "finetune=files", "synthetic tasks"),
])
def test_a_sources_own_key_without_that_source_is_refused(compose_config, override, source, chosen):
    """Not ignored: without data=text_files, data.paths would leave the embedded corpus to be trained on."""
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}=.* is read by {source}.*add {source} .*the {chosen}"):
        compose_config(override)


def test_unknown_task_lists_valid_tasks(compose_config):
    with pytest.raises(ConfigError, match="topic"):
        compose_config("finetune.tasks=[topic,nonsense]")


def test_top_level_seed_drives_trainer_and_finetune_seeds(compose_config):
    cfg = compose_config("seed=7")
    assert (cfg.seed, cfg.trainer.seed, cfg.finetune.seed) == (7, 7, 7)
    assert cfg.data.seed == 0  # the benchmark corpus stays the same
    assert compose_config("seed=7", "trainer.seed=1").trainer.seed == 1


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml")))
def test_every_preset_experiment_composes_with_its_sweep(experiment):
    from hydra import compose, initialize_config_dir

    from pretrainer.cli import to_config

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        overrides = [f"experiment={experiment}"]
        params = compose("config", overrides=overrides, return_hydra_config=True).hydra.sweeper.params
        cfg = to_config(compose("config", overrides=overrides))
    params = params or {}
    if experiment == "real_scale":  # composes and validates, although it needs network and a GPU to run
        assert cfg.data.source == "hub" and cfg.trainer.device == "cuda" and cfg.arch.d_model == 768
        assert cfg.finetune.source == "glue" and len(cfg.finetune.tasks) == 9
        assert cfg.finetune.eval_size is None  # each task's own dev carve: WNLI has 635 training examples
        from pretrainer.interop.bert import REQUIRED  # BERT-base: exportable as BertForMaskedLM
        assert {key: getattr(cfg.arch, key) for key in REQUIRED} == REQUIRED
    elif experiment == "mlm_vs_scratch":  # the question (pretrained vs scratch) is inside every run
        assert dict(params) == {"seed": "0,1,2"} and cfg.trainer.max_steps == 1200  # the demo's budget
        assert cfg.finetune.train_size == 1000 and cfg.finetune.tasks == ["topic", "sentiment", "agreement",
                                                                          "entailment", "tagging"]
        assert cfg.objective.name == "mlm" and cfg.finetune.scratch_baseline
    else:
        assert "seed" in params and len(params) >= 2  # a sweep over seeds and the question's choices
    if experiment == "alibi_directions":  # the measured setting: the demo's steps, both ALiBi kinds, tied or not
        assert params["arch.positions"] == "alibi,alibi_directional" and cfg.trainer.max_steps == 1200
        assert params["arch.tie_embeddings"] == "false,true"
    if experiment == "zero_shot_curves":  # every objective of the benchmark table, scored along the way
        assert params["objective"] == "mlm,span_mlm,electra,clm,t5_span" and cfg.zero_shot.every == 600
        assert cfg.trainer.max_steps == 4800 and cfg.finetune.tasks == []
    if experiment == "layernorm":
        assert cfg.objective.name == "clm" and cfg.arch.name == "decoder"


def test_slurm_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        raw = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert raw.hydra.launcher._target_.endswith("SlurmLauncher") and raw.hydra.launcher.gpus_per_node == 1


def test_multinode_slurm_launcher_runs_one_task_per_gpu_on_two_nodes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        launcher = compose("config", overrides=["hydra/launcher=slurm_multinode"], return_hydra_config=True
                           ).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 8, 8)
    assert launcher.timeout_min == 720  # the rest from conf/hydra/launcher/slurm.yaml
