"""Guards against hostile-but-fair input: bounded decoding, non-radiograph DICOM, odd files."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dicom_gen import write_deflated_dicom, write_modality_dicom

from xray_utils.data.imageio import ImageReadError, read_gray, read_gray_bytes

ROOT = Path(__file__).resolve().parents[1]
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"


def _ramp(n: int = 64) -> np.ndarray:
    return (np.add.outer(np.arange(n), np.arange(n)) * 16).astype(np.uint16)


def test_deflated_dicom_is_read(tmp_path):
    path = write_deflated_dicom(tmp_path / "ok.dcm", 64, 64, _ramp())
    img = read_gray(path)
    assert img.shape == (64, 64) and img.dtype == np.uint8
    assert img[0, 0] < img[-1, -1]  # the ramp survived inflation


def test_deflate_bomb_is_refused_against_the_limit(tmp_path):
    # 1024 x 1024 x 2 bytes = 2 MiB inflated, the limit is 1 MiB: refused while inflating
    path = write_deflated_dicom(tmp_path / "bomb.dcm", 1024, 1024)
    assert path.stat().st_size < 20_000
    with pytest.raises(ImageReadError, match=r"bomb.dcm.*inflates to more than 1 MiB"):
        read_gray(path, max_bytes=2**20)
    # the same data declared as a small image: the inflated size alone decides
    path = write_deflated_dicom(tmp_path / "liar.dcm", 64, 64, pixel_bytes=2 * 2**20)
    with pytest.raises(ImageReadError, match="inflates to more than"):
        read_gray(path, max_bytes=2**20)


def test_declared_size_is_checked_before_decoding(tmp_path):
    # 40 frames of 256 x 256 x 2 bytes = 5 MiB declared (one frame stored); refused from the header
    path = write_deflated_dicom(tmp_path / "frames.dcm", 256, 256, frames=40, pixel_bytes=256 * 512)
    with pytest.raises(ImageReadError, match=r"40 frames of 256 x 256 pixels.*MAX_DECODED_BYTES"):
        read_gray(path, max_bytes=4 * 2**20)


def test_corrupt_deflate_stream_is_a_clear_error(tmp_path):
    path = write_deflated_dicom(tmp_path / "ok.dcm", 64, 64, _ramp())
    data = bytearray(path.read_bytes())
    data[-40:] = b"\xff" * 40
    with pytest.raises(ImageReadError, match=r"<mem>|corrupt|truncated"):
        read_gray_bytes(bytes(data), "<mem>.dcm")


@pytest.mark.parametrize("modality,sop,words", [
    ("CT", CT_STORAGE, "computed tomography"), ("MR", "1.2.840.10008.5.1.4.1.1.4", "magnetic"),
    ("US", "1.2.840.10008.5.1.4.1.1.6.1", "ultrasound"), ("NM", SC_STORAGE, "nuclear"),
    ("PT", SC_STORAGE, "positron"), ("", CT_STORAGE, "computed tomography"),
])
def test_non_radiograph_modalities_are_refused(tmp_path, modality, sop, words):
    path = write_modality_dicom(tmp_path / "slice.dcm", modality, sop)
    with pytest.raises(ImageReadError, match=rf"slice.dcm: .*{words}.*not a radiograph"):
        read_gray(path)
    assert read_gray(path, any_modality=True).shape == (64, 64)  # teaching override


def test_secondary_capture_saying_ct_names_it(tmp_path):
    path = write_modality_dicom(tmp_path / "sc.dcm", "CT", SC_STORAGE)
    with pytest.raises(ImageReadError, match="secondary capture"):
        read_gray(path)


@pytest.mark.parametrize("modality", ["CR", "DX", "OT", "RF", "MG"])
def test_radiograph_modalities_pass(tmp_path, modality):
    assert read_gray(write_modality_dicom(tmp_path / "film.dcm", modality)).shape == (64, 64)


def test_fifo_and_devices_are_named(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageReadError, match="named pipe"):
        read_gray(fifo)  # must not block
    with pytest.raises(ImageReadError, match="a device"):
        read_gray("/dev/zero")


def test_deflate_bomb_through_the_command_line_stays_small(tmp_path):
    """diagnose on a deflated DICOM that inflates to 8 MiB with a 1 MiB limit: refused, exit 1."""
    from bad_files import write_tiny_checkpoints

    ckpt = write_tiny_checkpoints(tmp_path / "ckpt")
    bomb = write_deflated_dicom(tmp_path / "bomb.dcm", 2048, 2048)
    code = ("import resource, sys; from xray_utils.data import imageio; "
            "imageio.MAX_DECODED_BYTES = 2**20; from xray_utils.cli import main; rc = main(sys.argv[1:]); "
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "diagnose", "--checkpoints", str(ckpt),
                           "--device", "cpu", str(bomb)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    assert "inflates to more than" in proc.stdout


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    from bad_files import write_tiny_checkpoints

    return write_tiny_checkpoints(tmp_path_factory.mktemp("ckpt") / "checkpoints")


def _copy(ckpts, dest):
    import shutil

    shutil.copytree(ckpts, dest)
    return dest


def _film(tmp_path, name="film.png", size=64):
    from PIL import Image

    path = tmp_path / name
    Image.fromarray((np.add.outer(np.arange(size), np.arange(size)) % 256).astype(np.uint8)).save(path)
    return path


def test_checkpoint_carries_sha256_and_same_mode(ckpts):
    import json

    from xray_utils.models import file_sha256

    meta = json.loads((ckpts / "chest" / "best.json").read_text())
    weights = ckpts / "chest" / "best.safetensors"
    assert meta["weights_sha256"] == file_sha256(weights)
    assert (weights.stat().st_mode & 0o777) == ((ckpts / "chest" / "best.json").stat().st_mode & 0o777)


@pytest.mark.parametrize("edit,words", [
    ({"image_size": 7}, "image_size is 7"), ({"image_size": 4096}, "image_size is 4096"),
    ({"image_size": "64"}, "image_size is '64'"), ({"multilabel": False}, "multilabel is False"),
    ({"task": "skull"}, "task is 'skull'"), ({"classes": ["a", "b"]}, "classes are"),
    ({"weights_sha256": "0" * 64}, "sha256 differs"),
])
def test_bad_checkpoint_description_refused(ckpts, tmp_path, edit, words):
    import json

    from xray_utils.models import CheckpointInvalid, load_checkpoint

    folder = _copy(ckpts, tmp_path / "c")
    info = folder / "chest" / "best.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), **edit}))
    with pytest.raises(CheckpointInvalid, match=words):
        load_checkpoint(info)


def test_flipped_bytes_and_nan_weights_refused(ckpts, tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    from xray_utils.models import CheckpointInvalid, file_sha256, load_checkpoint, upgrade_checkpoints

    folder = _copy(ckpts, tmp_path / "c")
    weights = folder / "xray_type" / "best.safetensors"
    data = bytearray(weights.read_bytes())
    for i in range(len(data) - 1000, len(data) - 1):
        data[i] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointInvalid, match="sha256 differs"):
        load_checkpoint(weights)
    # NaN weights with a matching digest (as if saved so): refused for the values
    weights = folder / "chest" / "best.safetensors"
    state = load_file(str(weights))
    state["classifier.weight"][0, 0] = float("nan")
    save_file(state, str(weights))
    info = folder / "chest" / "best.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "weights_sha256": file_sha256(weights)}))
    with pytest.raises(CheckpointInvalid, match="changed after they were written"):
        load_checkpoint(info)
    upgrade_checkpoints(folder, reseal=True)
    with pytest.raises(CheckpointInvalid, match="NaN or infinite"):
        load_checkpoint(info)


def test_checkpoint_without_its_digest_is_refused_until_upgraded(ckpts, tmp_path, capsys):
    """An older checkpoint (no digest at all, or only the weights' sha256) is refused, naming the
    upgrade command; after it, it loads."""
    import json

    from xray_utils.cli import main
    from xray_utils.models import CheckpointInvalid, load_checkpoint

    folder = _copy(ckpts, tmp_path / "c")
    info = folder / "chest" / "best.json"
    meta = json.loads(info.read_text())
    del meta["checkpoint_sha256"], meta["weights_sha256"]
    info.write_text(json.dumps(meta))
    with pytest.raises(CheckpointInvalid, match=r"carries no checkpoint_sha256.*upgrade-checkpoints"):
        load_checkpoint(info)
    assert main(["upgrade-checkpoints", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"{info}: upgraded" in out and out.count(": current") == 2
    _, loaded = load_checkpoint(info)
    assert loaded["image_size"] == meta["image_size"]


def test_edited_checkpoint_description_is_refused(ckpts, tmp_path, capsys):
    """A valid but changed best.json (image_size 224, as if edited) no longer matches its digest."""
    import json

    from xray_utils.cli import main
    from xray_utils.models import CheckpointInvalid, load_checkpoint

    folder = _copy(ckpts, tmp_path / "c")
    info = folder / "xray_or_not" / "best.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "image_size": 224}))
    with pytest.raises(CheckpointInvalid, match="changed after they were written"):
        load_checkpoint(info)
    assert main(["diagnose", "--checkpoints", str(folder), str(tmp_path / "x.png")]) == 2
    assert "changed after they were written" in capsys.readouterr().err
    assert main(["upgrade-checkpoints", str(folder)]) == 1  # refused without --reseal
    assert "refused" in capsys.readouterr().out
    assert main(["upgrade-checkpoints", "--reseal", str(folder)]) == 0
    assert load_checkpoint(info)[1]["image_size"] == 224


def test_saving_nan_weights_is_refused(tmp_path):
    import torch

    from xray_utils.models import CheckpointInvalid, build_model, checkpoint_meta, save_checkpoint

    model = build_model("xray_type")
    with torch.no_grad():
        model.classifier.bias[0] = float("inf")
    with pytest.raises(CheckpointInvalid, match="diverged"):
        save_checkpoint(model, tmp_path / "best", checkpoint_meta("xray_type", 32))
    assert not list(tmp_path.iterdir())


def test_bad_checkpoint_is_exit_2_before_any_file_is_read(ckpts, tmp_path, capsys):
    import json

    from commands import diagnose as main

    folder = _copy(ckpts, tmp_path / "c")
    info = folder / "xray_or_not" / "best.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "image_size": 0}))
    assert main(["--checkpoints", str(folder), "--json", str(tmp_path / "missing.png")]) == 2
    out, err = capsys.readouterr()
    assert "image_size is 0" in err and "missing.png" not in out + err


# --------------------------------------------------------------------------- diagnose() inputs


def test_any_input_type_gives_a_per_item_error(ckpts, tmp_path):
    from PIL import Image

    from xray_utils.diagnose.diagnoser import Diagnoser

    good = _film(tmp_path)
    checker = np.indices((64, 64)).sum(0) % 2 == 0
    partly_nan = np.where(checker, np.nan, np.add.outer(np.arange(64.0), np.arange(64.0)))
    items = [np.zeros((64, 64), complex), checker, np.array([["a"] * 64] * 64),
             np.empty((64, 64), object), Image.new("L", (0, 0)), np.zeros((0, 0)), 3.5, None,
             {"x": 1}, b"\xff\xfename.png", "nul\x00.png", partly_nan, good]
    results = Diagnoser(ckpts, device="cpu").diagnose(items, heatmaps=False)
    assert len(results) == len(items)
    ok = [d.ok for d in results]
    assert ok[1] and ok[-1] and ok[-2]  # bool image, partly NaN image (NaN -> 0) and the film
    assert not any(ok[i] for i in (0, 2, 3, 4, 5, 6, 7, 8, 9, 10))
    assert all(d.error for d in results if not d.ok)
    assert "\\xff" in results[9].file  # a byte name is reported, escaped


def test_non_finite_outputs_are_refused_per_image(ckpts, tmp_path):
    import torch

    from xray_utils.diagnose.diagnoser import Diagnoser

    diagnoser = Diagnoser(ckpts, device="cpu")
    with torch.no_grad():  # a model that gives NaN for bright images only
        model = diagnoser.models["xray_or_not"]
        old = model.forward

        def forward(x):
            out = old(x)
            return torch.where(x.flatten(1).amax(1, keepdim=True) > 3, out * float("nan"), out)
        model.forward = forward
    flat = np.where(np.indices((64, 64)).sum(0) % 2 == 0, 90, 110).astype(np.uint8)  # dim
    spike = flat.copy()
    spike[0, 0] = 255
    results = diagnoser.diagnose([flat, spike], heatmaps=False)
    assert results[0].ok and not results[1].ok and "non-finite" in results[1].error
    import json

    json.dumps([d.to_json() for d in results], allow_nan=False)


# --------------------------------------------------------------------------- the command line


def test_cli_names_exit_codes_and_long_names(ckpts, tmp_path, capsys):
    import json

    from commands import diagnose as main

    good = _film(tmp_path, "x" * 240 + ".png")
    weird = _film(tmp_path, "film.png")
    weird_name = os.fsencode(str(tmp_path)) + b"/f\xff\xfe.png"
    os.rename(weird, weird_name)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    heat = tmp_path / "heat"
    code = main(["--checkpoints", str(ckpts), "--json", "--heatmap-dir", str(heat), "--device", "cpu",
                 str(good), os.fsdecode(weird_name), str(fifo), "/dev/zero"])
    out, err = capsys.readouterr()
    records = json.loads(out)
    assert code == 1 and len(records) == 4
    assert records[0]["ok"] and records[1]["ok"] and "\\xff" in records[1]["file"]
    assert "named pipe" in records[2]["error"] and "device" in records[3]["error"]
    assert all(len(p.name) < 120 for p in heat.iterdir()) and len(list(heat.iterdir())) == 6
    assert main(["--checkpoints", str(ckpts), "--device", "cpu", str(good)]) == 0
    assert main(["--checkpoints", str(ckpts), "--device", "mps", str(good)]) == 2
    assert "mps" in capsys.readouterr().err


def test_cli_crash_is_exit_3_with_a_message(ckpts, tmp_path, capsys, monkeypatch):
    import json

    from commands import diagnose as main

    from xray_utils.diagnose import diagnoser

    def boom(self, *a, **k):
        raise RuntimeError("simulated failure")
    monkeypatch.setattr(diagnoser.Diagnoser, "_run_models", boom)
    code = main(["--checkpoints", str(ckpts), "--json", "--device", "cpu", str(_film(tmp_path))])
    out, err = capsys.readouterr()
    assert code == 3 and "simulated failure" in err
    assert json.loads(out) == []  # the JSON is still closed


def test_cli_strict_ascii_terminal_keeps_the_report(ckpts, tmp_path):
    film = _film(tmp_path, "röntgen_ü.png")
    env = {**os.environ, "PYTHONIOENCODING": "ascii:strict", "LC_ALL": "C"}
    proc = subprocess.run([sys.executable, "-m", "xray_utils", "diagnose", "--checkpoints", str(ckpts),
                           "--device", "cpu", str(film)], capture_output=True, text=True, cwd=ROOT,
                          env=env, errors="replace")
    assert proc.returncode == 0, proc.stderr
    assert "r\\xf6ntgen" in proc.stdout and "1 diagnosed" in proc.stdout


def test_diagnose_help_imports_no_torch():
    code = ("import sys\nfrom xray_utils.cli import main\ntry:\n    main(['diagnose', '--help'])\n"
            "except SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "--any-modality" in proc.stdout and "TORCH False" in proc.stdout


def test_cli_defaults_match_the_diagnoser():
    from xray_utils.cli import diagnose as cli
    from xray_utils.diagnose import diagnoser

    assert (cli.DEFAULT_TOP_K, cli.DEFAULT_BATCH_SIZE) == (diagnoser.DEFAULT_TOP_K,
                                                          diagnoser.DEFAULT_BATCH_SIZE)
    assert cli.default_checkpoints_dir() == diagnoser.default_checkpoints_dir()


# --------------------------------------------------------------------------- labelled folders


def _folder(tmp_path, rows, header="file,is_xray,xray_type,labels"):
    from PIL import Image

    root = tmp_path / "mine"
    root.mkdir(exist_ok=True)
    for i in range(2):
        Image.fromarray(((np.arange(64 * 64).reshape(64, 64) * (i + 1)) % 256).astype(np.uint8)).save(
            root / f"f{i}.png")
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


@pytest.mark.parametrize("rel,words", [
    ("../../../../etc/passwd", "points outside"), ("/etc/passwd", "absolute path"),
    ("link.png", "points outside"),
])
def test_labelled_folder_paths_stay_inside(tmp_path, rel, words):
    from xray_utils.sources import labelled_folder
    from xray_utils.sources.dataset_spec import DatasetError

    root = _folder(tmp_path, ["f0.png,1,chest,No Finding", f"{rel},1,chest,No Finding"])
    os.symlink(tmp_path / "outside.png", root / "link.png")
    with pytest.raises(DatasetError, match=words):
        labelled_folder.load(root)


def test_labelled_folder_refuses_corrupt_images_misspelt_labels_and_empty_csv(tmp_path):
    from xray_utils.sources import labelled_folder
    from xray_utils.sources.dataset_spec import DatasetError

    root = _folder(tmp_path, ["f0.png,1,chest,Efusion|Mass", "f1.png,1,chest,No Finding"])
    with pytest.raises(DatasetError, match=r"Efusion.*'Effusion'\?.*Valid labels: Atelectasis"):
        labelled_folder.load(root)
    root = _folder(tmp_path, ["f0.png,1,chest,Tuberculosis", "f1.png,1,chest,Mass"])
    assert list(labelled_folder.load(root)["findings"]) == ["", "Mass"]  # unknown, documented
    data = (root / "f1.png").read_bytes()
    (root / "f1.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"f1.png.*truncated|f1.png.*corrupt"):
        labelled_folder.load(root)
    assert len(labelled_folder.load(root, drop_missing=True)) == 1
    root = _folder(tmp_path, [])
    with pytest.raises(DatasetError, match="no rows"):
        labelled_folder.load(root)


def test_labelled_folder_of_missing_files_is_refused_after_a_bounded_number_of_checks(tmp_path):
    from xray_utils.sources import labelled_folder
    from xray_utils.sources.dataset_spec import DatasetError

    rows = [f"gone/{i:07d}.png,1,chest,No Finding" for i in range(200_000)]
    root = _folder(tmp_path, rows)
    with pytest.raises(DatasetError, match=r"at least 100 of the first 100 of its 200000 listed "
                                           r"image\(s\) are missing \(checking stopped there\)"):
        labelled_folder.load(root)
    with pytest.raises(DatasetError, match=r"none of its 200000 listed image\(s\) exists"):
        labelled_folder.load(root, drop_missing=True)


@pytest.mark.parametrize("row,words", [
    ("f1.png,1,chest,No Finding,=HYPERLINK(\"x\"),64", "line 3, column width: '=HYPERLINK"),
    ("f1.png,1,chest,@SUM(1),64,64", "line 3, column labels: '@SUM"),
    ("f1.png,1,chest,No Finding,+64,64", "column width"),
    ("f1.png,1,chest,No Finding,64 px,64", "width must be empty or a whole number"),
])
def test_labelled_folder_refuses_formula_text(tmp_path, row, words):
    from xray_utils.sources import labelled_folder
    from xray_utils.sources.dataset_spec import DatasetError

    root = _folder(tmp_path, ["f0.png,1,chest,No Finding,64,64", row],
                   header="file,is_xray,xray_type,labels,width,height")
    with pytest.raises(DatasetError, match=re.escape(words) if "(" in words else words):
        labelled_folder.load(root)


def test_transfer_reads_labels_through_the_checked_loader(ckpts, tmp_path, capsys):
    from xray_utils.cli import main

    root = _folder(tmp_path, ["f0.png,1,chest,No Finding", "../../../../etc/passwd,0,,"])
    assert main(["transfer", "--checkpoints", str(ckpts), "--samples", str(root)]) == 2
    out = capsys.readouterr().out
    assert "points outside" in out and "etc/passwd" in out
