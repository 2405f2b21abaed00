"""train.py / eval.py: clear one-line errors for the real-setting configs without weights."""
import pytest

import eval as eval_entry
import train as train_entry


@pytest.mark.parametrize("entry,cfg", [(train_entry, "train_configs/gemkr_finetune.yaml"),
                                       (eval_entry, "eval_configs/gemkr_eval.yaml")])
def test_real_setting_config_fails_naming_the_missing_path(entry, cfg):
    with pytest.raises(SystemExit) as exit_info:
        entry.main(["--cfg-path", cfg])
    message = str(exit_info.value)
    assert message.startswith("error: config key 'model.llm.path'") and "/path/to/llama-7b" in message


def test_unknown_override_fails_before_building(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_entry.main(["--cfg-path", "train_configs/gemkr_finetune.yaml", "run.init_lrr=1"])
    assert "unknown config key 'run.init_lrr'" in str(exit_info.value) and "'init_lr'" in str(exit_info.value)
