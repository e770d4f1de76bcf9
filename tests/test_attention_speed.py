"""benchmarks/attention_speed.py: the results line it records per family and the families it measures."""

from __future__ import annotations

import pytest
from helpers import load_script

attention_speed = load_script("benchmarks", "attention_speed")
results = attention_speed.results  # the results module the script appends through


def test_record_row_is_a_results_line_of_the_median_step() -> None:
    cfg = attention_speed.family_config("filterbank", None)
    row = attention_speed.record_row(cfg, (True, True), 64, [0.5, 0.4, 0.6], [0.1, 0.2, 0.05], "Some CPU", "cmd", "quiet")
    assert tuple(row) == results.FIELDS
    assert row["model"] == "paper-mnist (T=64, LSTM 256, z 100, read filterbank 2, write filterbank 5)"
    assert (row["batch"], row["images_per_s"], row["ms_per_step"], row["s_per_epoch"]) == (64, 128.0, 500.0, 468.8)
    assert (row["precision"], row["compile"], row["cuda_graph"], row["device"]) == ("float32", "off", "off", "Some CPU")
    assert row["note"] == "sampling 640.0 img/s; quiet" and row["command"] == "cmd" and row["test_bound"] is None


def test_model_label_leaves_out_the_sizes_a_family_without_attention_ignores() -> None:
    cfg = attention_speed.family_config("no-attention", 4)
    assert cfg.glimpses == 4 and (cfg.enc_size, cfg.z_size) == (256, 100)
    label = attention_speed.model_label(cfg, attention_speed.attention(cfg))
    assert label == "paper-mnist (T=4, LSTM 256, z 100, read no-attention, write no-attention)"


def test_families_default_to_those_installed_as_reader_and_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = {"reader": ["filterbank", "stn", "no-attention", "other"], "writer": ["no-attention", "filterbank", "other"]}
    monkeypatch.setattr(attention_speed.registry, "names", lambda kind: installed[kind])
    parser, _ = attention_speed.parse_args([])
    assert attention_speed.families(parser, None) == ["filterbank", "no-attention"]


def test_families_asked_resolve_aliases_and_refuse_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    parser, _ = attention_speed.parse_args([])
    assert attention_speed.families(parser, ["attn", "none", "filterbank"]) == ["filterbank", "no-attention"]
    with pytest.raises(SystemExit) as exit_info:
        attention_speed.families(parser, ["filterbank", "nope"])
    assert exit_info.value.code == 2
    assert "unknown writer 'nope'; installed writers: attn, filterbank" in capsys.readouterr().err
