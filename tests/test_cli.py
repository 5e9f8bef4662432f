"""The command line: config errors print one line naming the field, before any work."""
import subprocess

import pytest

from tests.scripts import MISSING_BACKEND_LOG, ROOT, script, script_env

CONFIG = f"--config={ROOT / 'experiments' / 'configs' / 'test.py'}"


@pytest.mark.parametrize("args, message", [
    ([CONFIG, "--config.model.widht=3"],
     "error: --config.model.widht: 'widht' is not a config field; Did you mean \"width\""),
    # a field renamed since (rgsym.config.RENAMED) names its new name
    ([CONFIG, "--config.model.family=gnn"],
     "error: --config.model.family: 'family' is not a config field; renamed to model.kind"),
    ([CONFIG, "--config.model.width=-3"],
     "error: variant 'mlp-none-tanh': config section 'model': width=-3 is not valid"),
    ([CONFIG, "--config.model.width=abc"], "error: flag --config.model.width=abc"),
    # every variant of test.py sets its activation: the base value would reach none
    ([CONFIG, "--config.model.activation=tnah"],
     "error: --config.model.activation: every variant of this config sets its own"),
    # a cache directory that cannot be made (a file's path), refused before any work
    ([CONFIG, f"--config.compile_cache={ROOT / 'README.md'}"],
     f"error: compile_cache='{ROOT / 'README.md'}' is not valid: the directory"),
    (["--config=experiments/configs/nope.py"],
     "error: --config=experiments/configs/nope.py: cannot be loaded: [Errno 2]"),
])
def test_a_config_error_prints_one_line_and_exits_before_any_work(tmp_path, args, message):
    work = tmp_path / "run"
    out = subprocess.run(script("experiments", "sweep.py") + args + [f"--workdir={work}"],
                         capture_output=True, text=True, timeout=120, env=script_env(),
                         cwd=ROOT)
    assert out.returncode == 1
    assert out.stderr.startswith(message), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert MISSING_BACKEND_LOG not in out.stderr and not work.exists()


def test_a_config_file_still_setting_model_family_is_one_line_naming_model_kind(tmp_path):
    old = tmp_path / "old.py"
    old.write_text("from rgsym.config import base_config\n\n\ndef get_config():\n"
                   "    c = base_config()\n    c.model.family = 'gnn'\n    return c\n")
    work = tmp_path / "run"
    out = subprocess.run(script("experiments", "sweep.py") + [f"--config={old}",
                                                              f"--workdir={work}"],
                         capture_output=True, text=True, timeout=120, env=script_env(),
                         cwd=ROOT)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith(f"error: --config={old}: 'family' is not a config field; "
                                 "renamed to model.kind"), out.stderr
    assert not work.exists()


def test_helpshort_lists_the_sweep_flags():
    out = subprocess.run(script("experiments", "sweep.py") + ["--helpshort"],
                         capture_output=True, text=True, timeout=120, env=script_env())
    assert "Traceback" not in out.stderr  # (absl exits with status 1 after help)
    for flag in ("--config:", "--workdir:", "--[no]progress:", "--cpu_devices:"):
        assert flag in out.stdout, out.stdout
