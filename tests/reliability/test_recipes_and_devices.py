"""Bad recipes through `edgeport run`, and unreachable devices through `edgeport bench`: exit code, one line
naming file/line/key or host, nothing written to --out."""

from __future__ import annotations

import socket

import pytest

from tests.reliability.conftest import assert_clean_failure

GOOD = """\
[model]
name = "mobilenet_v1"
input_shape = [1, 3, 64, 64]

[export]
targets = ["onnx-fp32"]
"""


@pytest.mark.parametrize(
    "edit, patterns",
    [
        (lambda t: t.replace('targets =', 'targest ='), [r"recipe\.toml:6", r"targest", r"targets"]),
        (lambda t: t.replace('input_shape = [1, 3, 64, 64]', 'input_shape = "big"'), [r"recipe\.toml:3", r"input_shape"]),
        (lambda t: t + '\n[thresholds.int8]\nmin_top1 = 1.5\n', [r"min_top1", r"1\.5"]),
        (lambda t: t.replace('name = "mobilenet_v1"', 'name = "mobilenet_v1"\nweights = "../../etc/passwd"'),
         [r"weights", r"outside|escap"]),
        (lambda t: t.replace('name = "mobilenet_v1"', 'name = "mobilenet_v1"\nweights = "missing.pt"'), [r"missing\.pt"]),
        (lambda t: "[model\nname = 1", [r"recipe\.toml", r"line 1|:1"]),
    ],
    ids=["typo-key", "wrong-type", "impossible-threshold", "path-escape", "missing-weights", "toml-syntax"],
)
def test_bad_recipe(cli, tmp_path, edit, patterns):
    recipe = tmp_path / "recipes" / "recipe.toml"
    recipe.parent.mkdir()
    recipe.write_text(edit(GOOD))
    out = tmp_path / "out"
    assert_clean_failure(cli("run", recipe, "--out", out), 1, *patterns)
    assert not any(p.suffix in (".onnx", ".tflite", ".json", ".md", ".html", ".xml") for p in out.rglob("*")) if out.exists() else True


def test_unreachable_ssh_device_times_out_with_one_line(cli, byo_onnx):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = cli("bench", next(byo_onnx.glob("*.tflite")), "--device", f"ssh://pi@127.0.0.1:{port}", "--ssh-timeout", "3")
    assert_clean_failure(r, 1, rf"127\.0\.0\.1.*{port}|{port}.*127\.0\.0\.1")
