"""``rhflow inspect``: a workflow's nodes and editable fields from the server (through run's
cache), an AI app's fields from apiCallDemo, a local file; ``--json``; ``--skeleton`` pipelines
that validate as printed and run against the emulator."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from PIL import Image

from rhflow.cli import main
from rhflow.emulator import Emulator
from rhflow.pipeline.workflows import default_cache_dir

ROOT = Path(__file__).resolve().parent.parent
T2I, I2I, APP = "1904136902449209346", "1904136902449209347", "1877265245566922753"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _requests(emu: Emulator, path: str) -> int:
    stats = requests.get(emu.url + "/emulator/stats", timeout=10).json()
    return int(stats["requests"].get(path, 0))


def test_table_lists_nodes_and_value_fields_without_links(
    emulator: Emulator, api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", T2I, "--base-url", emulator.url, "--api-key", api_key]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"workflow {T2I}: 7 nodes, 13 editable fields"
    assert lines[2].split() == ["node", "class", "title", "field", "type", "value"]
    assert lines[3].split() == ["3", "KSampler", "KSampler", "seed", "int", "156680208700286"]
    assert lines[4].split() == ["steps", "int", "20"]
    assert ["5", "EmptyLatentImage", "Empty", "Latent", "Image", "width", "int", "512"] in [
        line.split() for line in lines
    ]
    assert ["8", "VAEDecode", "VAE", "Decode", "-"] in [line.split() for line in lines]
    for link in ("model", "positive", "negative", "latent_image", "samples", "vae", "clip"):
        assert f" {link} " not in out, f"link field {link} shown"
    assert api_key not in out


def test_json_and_the_cache_run_uses(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = make_emulator()
    args = ["inspect", T2I, "--json", "--base-url", emu.url, "--api-key", api_key]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["source"], data["id"], data["workflow_file"]) == ("workflow", T2I, None)
    sampler = data["nodes"][0]
    assert (sampler["id"], sampler["class"], sampler["title"]) == ("3", "KSampler", "KSampler")
    assert [f["name"] for f in sampler["fields"]] == [
        "seed", "steps", "cfg", "sampler_name", "scheduler", "denoise",
    ]  # fmt: skip
    assert sampler["fields"][0] == {"name": "seed", "type": "int", "value": 156680208700286}
    assert [n["id"] for n in data["nodes"]] == ["3", "4", "5", "6", "7", "8", "9"]
    cached = default_cache_dir(emu.url) / f"{T2I}.json"
    assert cached.is_file() and str(cached).startswith(str(tmp_path / "cache"))
    assert _requests(emu, "/api/openapi/getJsonApiFormat") == 1
    assert main(args) == 0  # the second look reads the cache `rhflow run` reads too
    assert _requests(emu, "/api/openapi/getJsonApiFormat") == 1
    assert json.loads(capsys.readouterr().out) == data


def test_app_fields_come_from_api_call_demo(
    emulator: Emulator, api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["inspect", f"app:{APP}", "--base-url", emulator.url, "--api-key", api_key]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"AI app {APP} (Text to image (emulator)): 4 nodes, 5 editable fields"
    assert [line.split()[:4] for line in lines[3:]] == [
        ["6", "CLIPTextEncode", "text", "string"],
        ["7", "CLIPTextEncode", "text", "string"],
        ["3", "KSampler", "seed", "int"],
        ["5", "EmptyLatentImage", "width", "int"],
        ["height", "int", "512"],
    ]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["nodes"][2]["fields"] == [
        {"name": "seed", "type": "int", "value": 156680208700286, "description": "seed"}
    ]


def _validate_and_run(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path)]) == 0, capsys.readouterr()
    assert f"{path}: ok (1 task)" in capsys.readouterr().out
    assert main(["run", str(path), "--emulator", "--quiet"]) == 0, capsys.readouterr()
    capsys.readouterr()


def test_skeleton_of_a_cloud_workflow_validates_and_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["inspect", T2I, "--emulator", "--skeleton"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# yaml-language-server: $schema=pipeline.schema.json\n")
    assert '    workflow: "1904136902449209346"\n' in text
    assert '      "3": {seed: 156680208700286, steps: 20, cfg: 8}  # KSampler\n' in text
    assert '      "5": {width: 512, height: 512}  # Empty Latent Image\n' in text
    assert '      "7": {text: "text, watermark"}  # CLIP Text Encode (Prompt)\n' in text
    (tmp_path / "pipeline.yaml").write_text(text)
    _validate_and_run(tmp_path / "pipeline.yaml", capsys)
    manifest = json.loads((tmp_path / "out" / "main" / "manifest.json").read_text())
    sent = {
        (i["nodeId"], i["fieldName"]): i["fieldValue"]
        for i in manifest["tasks"][0]["node_info_list"]
    }
    assert sent[("3", "seed")] in (156680208700286, "156680208700286")
    [output] = manifest["tasks"][0]["outputs"]
    with Image.open(tmp_path / "out" / "main" / output["path"]) as image:
        assert image.size == (512, 512)


def test_skeleton_asks_for_input_images_as_files_that_validate_accepts_before_they_exist(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shutil.copy(ROOT / "pipelines" / "workflows" / "i2i.json", tmp_path / "i2i.json")
    assert main(["inspect", "i2i.json", "--skeleton"]) == 0
    text = capsys.readouterr().out
    line = (
        '      "2": {image: {file: "inputs/example.png"}}  # Load Image: put the image at '
        "inputs/example.png (beside this file)\n"
    )
    assert line in text
    (tmp_path / "pipeline.yaml").write_text(text)
    # validate accepts the skeleton as it is, saying what to do about the missing image
    assert main(["validate", "pipeline.yaml"]) == 0
    out, err = capsys.readouterr()
    assert out == "pipeline.yaml: ok (1 task)\n"
    row = next(n for n, t in enumerate(text.splitlines(), 1) if t.startswith('      "2"'))
    col = line.index("{file") + 1  # at the {file: ...} value
    assert err == (
        f"pipeline.yaml:{row}:{col}: warning: steps.i2i.nodes.2.image.file: input file not found "
        "yet: inputs/example.png (paths are relative to the pipeline file); put the file there "
        "before rhflow plan or run, which refuse a missing input\n"
    )
    assert main(["validate", "pipeline.yaml", "--strict"]) == 1  # strict: every input there
    capsys.readouterr()
    assert main(["validate", "pipeline.yaml", "--json"]) == 0
    [report] = json.loads(capsys.readouterr().out)["files"]
    assert (report["ok"], report["checked"], report["problems"]) == (True, False, [])
    assert [w["kind"] for w in report["warnings"]] == ["missing"]
    # plan and run refuse it until the file is there, and send nothing
    assert main(["run", "pipeline.yaml", "--emulator", "--quiet"]) == 2
    assert "file not found: inputs/example.png" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    (tmp_path / "inputs").mkdir()
    Image.new("RGB", (32, 32), "red").save(tmp_path / "inputs" / "example.png")
    assert main(["validate", "pipeline.yaml", "--strict"]) == 0
    assert capsys.readouterr() == ("pipeline.yaml: ok (1 task)\n", "")
    assert main(["plan", "pipeline.yaml", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    entry = {"nodeId": "2", "fieldName": "image", "fieldValue": "<upload:inputs/example.png>"}
    assert entry in plan["tasks"][0]["node_info_list"]
    assert main(["run", "pipeline.yaml", "--emulator", "--quiet"]) == 0, capsys.readouterr()


def test_skeleton_input_names_stay_inside_inputs() -> None:
    from rhflow.pipeline.fields import input_path

    assert input_path("api/9d77b8.png") == "inputs/9d77b8.png"
    assert input_path("../../etc/passwd") == "inputs/passwd"
    assert input_path("..") == "inputs/input"
    assert input_path("a b\\c:d.png") == "inputs/c_d.png"


def test_skeleton_of_an_ai_app_validates_and_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["inspect", f"app:{APP}", "--emulator", "--skeleton"]) == 0
    text = capsys.readouterr().out
    assert f'    app: "{APP}"\n' in text
    assert '      "3": {seed: 156680208700286}  # KSampler\n' in text
    (tmp_path / "app.yaml").write_text(text)
    _validate_and_run(tmp_path / "app.yaml", capsys)


def test_a_local_file_named_by_its_id_gives_a_runnable_skeleton(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "workflows").mkdir()
    shutil.copy(
        ROOT / "pipelines" / "workflows" / "t2i.json", tmp_path / "workflows" / f"{T2I}.json"
    )
    assert main(["inspect", f"workflows/{T2I}.json", "--skeleton"]) == 0
    text = capsys.readouterr().out
    assert f'    workflow: "{T2I}"\n    workflow_file: "workflows/{T2I}.json"\n' in text
    (tmp_path / "local.yaml").write_text(text)
    _validate_and_run(tmp_path / "local.yaml", capsys)


def test_a_local_file_without_an_id_says_where_the_id_goes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shutil.copy(ROOT / "pipelines" / "workflows" / "t2i.json", tmp_path / "mine.json")
    assert main(["inspect", "mine.json", "--skeleton"]) == 0
    text = capsys.readouterr().out
    assert "set workflow: to its id on RunningHub (the number in its URL) to run it" in text
    assert '    workflow: "0"\n    workflow_file: "mine.json"\n' in text
    (tmp_path / "mine.yaml").write_text(text)
    assert main(["validate", "mine.yaml"]) == 0
    assert capsys.readouterr().out == "mine.yaml: ok (1 task)\n"
    assert main(["inspect", "mine.json"]) == 0
    assert capsys.readouterr().out.startswith(
        "workflow file mine.json: 7 nodes, 13 editable fields\n"
    )


NOT_A_WORKFLOW = (
    "Error: 'nonsense' is not a workflow: give a workflow id (the number in its URL), "
    "app:WEBAPPID for an AI app, or an API-format workflow JSON file\n"
)
NO_KEY = (
    "Error: no RunningHub API key: set RH_API_KEY or pass --api-key "
    "(or use --emulator to try without a key)\n"
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "nonsense"], NOT_A_WORKFLOW),
        (["inspect", "missing.json"], "Error: missing.json: file not found\n"),
        (["inspect", "app:x1"], "Error: app:x1: an AI app id (webappId) is a number\n"),
        (["inspect", T2I], NO_KEY),
    ],
)
def test_bad_workflow_arguments(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert capsys.readouterr().err == message


def test_a_file_that_is_not_a_workflow(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[1, 2]")
    assert main(["inspect", "list.json"]) == 2
    assert capsys.readouterr().err == (
        "Error: list.json: not an API-format workflow ({node id: {class_type, inputs}}); "
        "in ComfyUI use Workflow > Export (API)\n"
    )


def test_unknown_ids_say_what_the_server_said(
    emulator: Emulator, api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ["--base-url", emulator.url, "--api-key", api_key]
    assert main(["inspect", "123", *server]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: cannot fetch workflow 123: ") and "WORKFLOW_NOT_EXISTS" in err
    assert main(["inspect", "app:42", *server]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: cannot read the fields of AI app 42: ") and "901" in err
    assert api_key not in err


def test_app_field_types_become_typed_values_and_file_lines() -> None:
    """apiCallDemo sends every value as a string; the skeleton types them as fieldType says."""
    import yaml

    from rhflow.api.results import AppInfo
    from rhflow.commands.inspect import app_nodes
    from rhflow.pipeline.fields import Target, skeleton

    def item(node: str, name: str, kind: str, value: str) -> dict[str, str]:
        return {"nodeId": node, "nodeName": "N", "fieldName": name, "fieldType": kind,
                "fieldValue": value}  # fmt: skip

    info = AppInfo.from_data(
        {"webappName": "Restyle", "nodeInfoList": [
            item("1", "image", "IMAGE", "face.png"), item("2", "strength", "FLOAT", "0.75"),
            item("2", "fast", "BOOLEAN", "true"), item("2", "steps", "INT", "oops"),
            item("3", "style", "LIST", "ink"),
        ]}
    )  # fmt: skip
    text = skeleton(Target("app", "42"), app_nodes(info), name=info.name)
    assert (
        '      "1": {image: {file: "inputs/face.png"}}  # N: put the image at inputs/face.png'
        in text
    )
    step = yaml.safe_load(text)["steps"]["restyle"]
    assert step["app"] == "42"
    assert step["nodes"] == {
        "1": {"image": {"file": "inputs/face.png"}},
        "2": {"strength": 0.75, "fast": True, "steps": "oops"},
        "3": {"style": "ink"},
    }
