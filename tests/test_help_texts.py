"""The commands' help texts say what the README says, in plain text a terminal shows."""
from __future__ import annotations

import pytest

from xray_utils.cli import build_parser
from xray_utils.cli.run import list_notebooks, notebook_parameters


def help_of(command: str) -> str:
    return build_parser([command])._subparsers._group_actions[0].choices[command].format_help()


def test_download_help_is_plain_text():
    text = help_of("download")
    assert "``" not in text and ":mod:" not in text and "--offline" in text


def test_run_help_lists_every_notebooks_keys():
    text = " ".join(help_of("run").split())
    for nb in list_notebooks():
        assert nb.stem in text
        for key in notebook_parameters(nb) - {"PROFILE"}:
            assert key in text, (nb.name, key)
    assert "RUN_DIR" in text and "seed1" in text  # how not to overwrite the demo run


@pytest.mark.parametrize("key", ["EPOCHS", "LR", "RECIPE", "DISTRIBUTED", "RUN_DIR"])
def test_train_help_lists_its_keys(key):
    text = help_of("train")
    assert "Train one module" in text and key in text


def test_offline_hint_names_the_command_line_stand_in(tmp_path):
    from xray_utils.sources import public

    with pytest.raises(public.PublicDataError) as err:
        public.require_public(tmp_path, offline=True, names=["mednist"])
    assert "-p PUBLIC_STAND_IN DIR" in str(err.value) and "stand_in=" not in str(err.value)
