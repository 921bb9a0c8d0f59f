"""The catalogue of published models and their download, against a real HTTP server on 127.0.0.1
(dropped connections, Range requests, servers that ignore them, wrong files, cancel), the CLI, the
worker task, and the plugin's *Download published model* run through processing.run."""
import hashlib
import itertools
import json
import os
import shutil
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine import model_catalogue
from engine.errors import Cancelled, EngineError
from engine.model_catalogue import (
    CARD_SUMMARY_CHARS,
    download,
    find_model,
    installed_models,
    load_catalogue,
    user_models_dir,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = os.urandom(3 * 1024 * 1024 + 12345)  # checkpoint-sized, not a multiple of the chunk size
DROP_AFTER = 1024 * 1024 + 777  # bytes sent before the connection is dropped
QUICK = {"retries": 3, "timeout_s": 10.0, "retry_pause_s": 0.01}  # every request goes to 127.0.0.1


class CheckpointServer:
    """Serves ``payload`` at every path; honours Range requests unless told not to, drops the
    connection after ``DROP_AFTER`` bytes in its first ``drops`` responses, sends 64 KiB every
    ``pace_s`` seconds when given, records each request's Range header."""

    def __init__(self, payload: bytes = PAYLOAD, honour_range: bool = True, drops: int = 0,
                 content_type: str = "application/octet-stream", pace_s: float = 0.0):
        self.payload, self.honour_range, self.drops, self.content_type = payload, honour_range, drops, content_type
        self.pace_s = pace_s
        self.ranges: list[str | None] = []
        self.statuses: list[int] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str = "checkpoint.pt") -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                asked = self.headers.get("Range")
                server.ranges.append(asked)
                start = int(asked.removeprefix("bytes=").split("-")[0]) if asked and server.honour_range else 0
                body = server.payload[start:]
                status = 206 if start else 200
                server.statuses.append(status)
                self.send_response(status)
                self.send_header("Content-Type", server.content_type)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                self.end_headers()
                if server.drops > 0:
                    server.drops -= 1
                    body = body[:DROP_AFTER]  # then the connection closes short of Content-Length
                piece = 1 << 16 if server.pace_s else len(body)
                try:
                    for begin in range(0, len(body), piece):
                        self.wfile.write(body[begin:begin + piece])
                        time.sleep(server.pace_s)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a cancel)
                    pass

            def log_message(self, *args):
                pass

        return Handler


class Recorder:
    def __init__(self):
        self.events: list[tuple[float, str]] = []

    def __call__(self, fraction: float, text: str) -> None:
        self.events.append((fraction, text))

    @property
    def fractions(self) -> list[float]:
        return [fraction for fraction, _ in self.events]


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# --- download ------------------------------------------------------------------------------------

def test_a_dropped_connection_resumes_with_a_range_request(tmp_path):
    destination = tmp_path / "model.pt"
    progress = Recorder()
    with CheckpointServer(drops=1) as server:
        result = download(server.url(), destination, sha256_of(PAYLOAD), progress=progress, **QUICK)
    assert destination.read_bytes() == PAYLOAD
    assert result == {"path": str(destination), "sha256": sha256_of(PAYLOAD), "verified": True,
                      "size_bytes": len(PAYLOAD)}
    assert server.ranges[0] is None and len(server.ranges) == 2
    resumed_at = int(server.ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= DROP_AFTER and server.statuses == [200, 206]
    assert progress.fractions == sorted(progress.fractions)
    assert progress.fractions[-1] == 1.0 and any(0 < f < 1 for f in progress.fractions)
    assert any("retrying from byte" in text for _, text in progress.events)
    assert leftovers(tmp_path) == ["model.pt"]


def test_a_partial_file_left_by_an_earlier_call_is_resumed(tmp_path):
    destination = tmp_path / "model.pt"
    (tmp_path / "model.pt.part").write_bytes(PAYLOAD[:DROP_AFTER])
    with CheckpointServer() as server:
        download(server.url(), destination, sha256_of(PAYLOAD), **QUICK)
    assert server.ranges == [f"bytes={DROP_AFTER}-"]
    assert destination.read_bytes() == PAYLOAD and leftovers(tmp_path) == ["model.pt"]


def test_a_server_that_ignores_range_restarts_cleanly(tmp_path):
    destination = tmp_path / "model.pt"
    (tmp_path / "model.pt.part").write_bytes(b"not the start of this file" * 1000)
    progress = Recorder()
    with CheckpointServer(honour_range=False, drops=1) as server:
        result = download(server.url(), destination, progress=progress, **QUICK)
    assert all(asked.startswith("bytes=") for asked in server.ranges) and server.statuses == [200, 200]
    assert destination.read_bytes() == PAYLOAD
    assert result["sha256"] == sha256_of(PAYLOAD) and result["verified"] is False
    assert any("cannot resume" in text for _, text in progress.events)
    assert leftovers(tmp_path) == ["model.pt"]


def test_a_checksum_mismatch_is_refused_and_leaves_no_file(tmp_path):
    with CheckpointServer() as server, pytest.raises(EngineError) as refused:
        download(server.url(), tmp_path / "model.pt", "0" * 64, **QUICK)
    message = str(refused.value)
    assert f"SHA-256 {sha256_of(PAYLOAD)}" in message and "not the published " + "0" * 64 in message
    assert "Download it again" in message
    assert leftovers(tmp_path) == []


def test_cancel_leaves_nothing(tmp_path):
    checks = itertools.count()
    with CheckpointServer() as server, pytest.raises(Cancelled, match="cancelled"):
        download(server.url(), tmp_path / "model.pt", cancelled=lambda: next(checks) >= 5, **QUICK)
    assert leftovers(tmp_path) == []


def test_repeated_failures_keep_the_partial_file_for_a_later_resume(tmp_path):
    with CheckpointServer(drops=3) as server, pytest.raises(EngineError) as failed:
        download(server.url(), tmp_path / "model.pt", retries=2, timeout_s=10.0, retry_pause_s=0.01)
    assert "failed 3 times in a row" in str(failed.value) and "run the download again to resume" in str(failed.value)
    assert leftovers(tmp_path) == ["model.pt.part"]
    assert PAYLOAD.startswith((tmp_path / "model.pt.part").read_bytes())


def test_a_web_page_instead_of_the_file_is_refused(tmp_path):
    with CheckpointServer(b"<html>Virus scan warning</html>", content_type="text/html") as server, \
            pytest.raises(EngineError, match="answered with a web page, not the model file.*download the file there"):
        download(server.url(), tmp_path / "model.pt", **QUICK)
    assert leftovers(tmp_path) == []


def test_a_missing_file_is_a_clear_error_without_retries(tmp_path):
    with CheckpointServer() as server:
        server.httpd.RequestHandlerClass.do_GET = lambda handler: handler.send_error(404)
        with pytest.raises(EngineError, match="answered HTTP 404 .*not available there"):
            download(server.url(), tmp_path / "model.pt", **QUICK)
    assert leftovers(tmp_path) == []


def test_a_verified_file_already_there_is_not_downloaded_again(tmp_path):
    (tmp_path / "model.pt").write_bytes(PAYLOAD)
    with CheckpointServer() as server:
        result = download(server.url(), tmp_path / "model.pt", sha256_of(PAYLOAD), **QUICK)
    assert server.ranges == [] and result["verified"] is True


# --- catalogue -----------------------------------------------------------------------------------

def test_the_catalogue_is_valid_and_lists_every_magicbathynet_checkpoint():
    from engine.tasks import TASKS

    models = load_catalogue()
    assert len({model.id for model in models}) == len(models)
    magicbathynet = {(m.source, m.import_options["modality"], m.import_options["area"])
                     for m in models if m.family == "MagicBathyNet"}
    assert magicbathynet == set(itertools.product(
        ("magicbathynet-bathymetry", "magicbathynet-seabed-unet", "magicbathynet-seabed-segformer"),
        ("aerial", "spot6", "s2"), ("agia_napa", "puck_lagoon")))
    assert {m.licence for m in models if m.family == "MagicBathyNet"} == {
        "CC BY-NC-SA 4.0 (non-commercial; adaptations under the same licence)"}
    for model in models:
        assert model.task in TASKS
        assert model.url.startswith("https://") and model.citation and model.licence and model.checksum_note
        assert model.sha256 is None or len(model.sha256) == 64 and int(model.sha256, 16) >= 0
    assert {m.family for m in models} == {"MagicBathyNet", "RemoteCLIP", "GeoRSCLIP", "SkyCLIP", "reBEN", "TSViT",
                                          "HyCoT"}


def test_a_broken_catalogue_names_each_problem(tmp_path):
    good = json.loads(model_catalogue.CATALOGUE.read_text())["models"][0]
    no_url = {key: value for key, value in good.items() if key != "url"}
    bad_hash = {**good, "id": "other", "sha256": "ABC"}
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps({"models": [good, no_url, bad_hash, good]}))
    with pytest.raises(EngineError) as invalid:
        load_catalogue(path)
    message = str(invalid.value)
    assert "entry 2" in message and "missing fields ['url']" in message
    assert "entry 3 (other): sha256 must be null or 64 lower-case hexadecimal digits" in message
    assert f"ids used more than once: {good['id']}" in message
    path.write_text("{not json")
    with pytest.raises(EngineError, match="is not valid JSON"):
        load_catalogue(path)
    with pytest.raises(EngineError, match="no published model 'nope'.*magicbathynet-bathymetry-s2-agia-napa"):
        find_model("nope")


def test_the_user_models_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("RSAI_MODELS_DIR", str(tmp_path / "mine"))
    assert user_models_dir() == tmp_path / "mine"
    monkeypatch.delenv("RSAI_MODELS_DIR")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "linux")
    assert user_models_dir() == tmp_path / ".local" / "share" / "rsai-toolbox" / "models"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert user_models_dir() == tmp_path / "Library" / "Application Support" / "rsai-toolbox" / "models"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    assert user_models_dir() == tmp_path / "Roaming" / "rsai-toolbox" / "models"


def test_installed_models_are_grouped_by_task(monkeypatch, tmp_path):
    monkeypatch.setenv("RSAI_MODELS_DIR", str(tmp_path))
    (tmp_path / "imported").mkdir()
    shutil.copy(REPO_ROOT / "models_onnx" / "seabed_s2_sim.onnx", tmp_path / "imported" / "my_seabed.onnx")
    (tmp_path / "truncated.onnx").write_bytes(b"\x08\x07 not a model")
    installed = installed_models()
    tasks = {task: {(entry["name"], entry["origin"]) for entry in entries}
             for task, entries in installed["tasks"].items()}
    assert tasks["bathymetry"] == {("bathymetry_s2_sim", "shipped")}
    assert tasks["seabed"] == {("seabed_s2_sim", "shipped")} | {("seabed_s2_sim", "user")}
    assert tasks["text_embedding"] == {("search_text_minilm", "shipped")}
    assert len(tasks["image_embedding"]) == 3 and len(tasks["hycot_encoder"]) == 4
    shipped = sum(len(entries) for entries in tasks.values()) - 1
    assert shipped == len(list((REPO_ROOT / "models_onnx").glob("*.onnx")))
    assert len(installed["warnings"]) == 1 and "truncated.onnx was skipped" in installed["warnings"][0]


# --- CLI and worker task -------------------------------------------------------------------------

def test_cli_lists_downloads_with_the_import_command_and_lists_installed(monkeypatch, tmp_path, capsys):
    from engine.__main__ import main

    assert main(["models", "list"]) == 0
    assert [entry["id"] for entry in json.loads(capsys.readouterr().out)] == [m.id for m in load_catalogue()]
    monkeypatch.setenv("RSAI_MODELS_DIR", str(tmp_path / "models"))
    model = find_model("magicbathynet-seabed-unet-s2-agia-napa")
    with CheckpointServer() as server:
        monkeypatch.setenv("RSAI_MODELS_MIRROR", server.url("mirror/"))
        assert main(["models", "download", model.id]) == 0
    assert server.ranges == [None]
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    saved = tmp_path / "models" / "downloads" / model.file_name
    assert result["path"] == str(saved) and saved.read_bytes() == PAYLOAD
    assert result["url"] == server.url(f"mirror/{model.file_name}")
    expected_command = (f"python -m training import --source magicbathynet-seabed-unet --checkpoint {saved} "
                        f"--out {tmp_path / 'models' / model.id}.onnx --area agia_napa --modality s2")
    assert result["import_command"] == expected_command and expected_command in captured.err
    assert "could not be verified" in captured.err
    record = json.loads((saved.parent / f"{model.file_name}.json").read_text())
    assert record["sha256"] == sha256_of(PAYLOAD) and record["verified"] is False and record["id"] == model.id
    assert main(["models", "installed"]) == 0
    assert "bathymetry" in json.loads(capsys.readouterr().out)["tasks"]


def test_worker_task_refuses_a_known_checksum_mismatch(monkeypatch, tmp_path):
    from engine.tasks import run_task

    model = find_model("remoteclip-vit-b-32")
    with CheckpointServer() as server:
        monkeypatch.setenv("RSAI_MODELS_MIRROR", server.url())
        with pytest.raises(EngineError, match=f"not the published {model.sha256}"):
            run_task("download_model", {"id": model.id, "folder": str(tmp_path)}, lambda *a: None, lambda: False)
    assert leftovers(tmp_path) == []
    with pytest.raises(EngineError, match="unknown parameter"):
        run_task("download_model", {"id": model.id, "url": "x"}, lambda *a: None, lambda: False)


# --- plugin --------------------------------------------------------------------------------------

def test_plugin_downloads_a_published_model_through_the_worker(rsai_provider, monkeypatch, tmp_path):
    import processing

    algorithm = {a.id(): a for a in rsai_provider.algorithms()}["rsai:download_model"]
    assert algorithm.group() == "Models" and algorithm.displayName() == "Download published model"
    assert all(parameter.help() for parameter in algorithm.parameterDefinitions())
    models = load_catalogue()
    options = algorithm.parameterDefinition("MODEL").options()
    assert len(options) == len(models) and options[0].startswith(models[0].title)
    index = next(i for i, model in enumerate(models) if model.id == "magicbathynet-bathymetry-s2-puck-lagoon")
    monkeypatch.setenv("RSAI_MODELS_DIR", str(tmp_path / "models"))
    with CheckpointServer(drops=1) as server:
        monkeypatch.setenv("RSAI_MODELS_MIRROR", server.url())
        result = processing.run("rsai:download_model", {"MODEL": index})
    saved = tmp_path / "models" / "downloads" / models[index].file_name
    assert result["FILE"] == str(saved) and saved.read_bytes() == PAYLOAD
    assert result["SHA256"] == sha256_of(PAYLOAD) and result["VERIFIED"] is False
    assert result["IMPORT_COMMAND"].startswith("python -m training import --source magicbathynet-bathymetry ")
    assert server.ranges[1].startswith("bytes=")


def test_plugin_refuses_a_wrong_file_and_keeps_nothing(rsai_provider, monkeypatch, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    models = load_catalogue()
    index = next(i for i, model in enumerate(models) if model.id == "georsclip-vit-l-14")
    with CheckpointServer() as server:
        monkeypatch.setenv("RSAI_MODELS_MIRROR", server.url())
        with pytest.raises(QgsProcessingException, match="SHA-256 .* not the published"):
            processing.run("rsai:download_model", {"MODEL": index, "FOLDER": str(tmp_path)})
    assert leftovers(tmp_path) == []


def test_plugin_cancel_stops_the_download_and_keeps_nothing(rsai_provider, monkeypatch, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    class CancelOnFirstProgress(QgsProcessingFeedback):
        def setProgress(self, progress):  # noqa: N802 (QGIS API)
            super().setProgress(progress)
            if progress > 0:
                self.cancel()

    index = next(i for i, model in enumerate(load_catalogue()) if model.id == "skyclip-vit-b32-top50pct")
    with CheckpointServer(pace_s=0.05) as server:  # about 2.5 s for the whole file
        monkeypatch.setenv("RSAI_MODELS_MIRROR", server.url())
        with pytest.raises(QgsProcessingException, match="Cancelled"):
            processing.run("rsai:download_model", {"MODEL": index, "FOLDER": str(tmp_path)},
                           feedback=CancelOnFirstProgress())
    assert leftovers(tmp_path) == []  # a download that finished first would have left the file


def test_every_catalogue_entry_imports_with_the_training_command_line(tmp_path):
    """Each entry's source is a `python -m training import` source and its options parse there."""
    from training.__main__ import _parser
    from training.importers import importers

    assert set(model_catalogue.SOURCES) == set(importers())
    for model in load_catalogue():
        words = model.import_command(tmp_path / model.file_name, tmp_path / "out.onnx").split()
        assert words[:4] == ["python", "-m", "training", "import"], model.id
        args = _parser().parse_args(words[3:])
        assert args.source == model.source and args.checkpoint == tmp_path / model.file_name
        for option, value in model.import_options.items():
            assert str(getattr(args, option.replace("-", "_"))) == value, (model.id, option)


def test_installed_models_carry_their_inputs_and_card_summary(monkeypatch, tmp_path):
    monkeypatch.setenv("RSAI_MODELS_DIR", str(tmp_path))
    shutil.copy(REPO_ROOT / "models_onnx" / "seabed_s2_sim.onnx", tmp_path / "my_seabed.onnx")
    (tmp_path / "my_seabed.md").write_text("Notes before the title are skipped.\n\n# my_seabed\n\nImported from "
                                           "the **authors'** weights,\nas `published`.\n\n## Contract\n- bands\n")
    shutil.copy(REPO_ROOT / "models_onnx" / "bathymetry_s2_sim.onnx", tmp_path / "no_card.onnx")
    entries = {Path(entry["path"]).name: entry for entries in installed_models()["tasks"].values()
               for entry in entries}
    assert entries["my_seabed.onnx"]["summary"] == "my_seabed Imported from the authors' weights, as published."
    assert entries["no_card.onnx"]["summary"] == "" and entries["no_card.onnx"]["inputs"] == ["B04", "B03", "B02"]
    assert entries["hycot_cr8_enmap_sim_encoder.onnx"]["summary"].startswith(  # the pair's card
        "HyCoT CR 8: EnMAP-like hyperspectral compression (trained on SIMULATED spectra) These models were")
    assert len(entries["hycot_cr8_enmap_sim_encoder.onnx"]["inputs"]) == 202
    assert entries["crop_tsvit_s1s2_sim.onnx"]["inputs"] == ["s2 time series", "s1 time series"]
    long_card = entries["scene_labels_s1s2_fixture.onnx"]["summary"]
    assert len(long_card) <= CARD_SUMMARY_CHARS and long_card.endswith("…")  # cut
