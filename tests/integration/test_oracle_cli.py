"""cuneidet-train experiment=oracle_bone on a tiny JiaGuWen folder, then cuneidet-oracle predict."""

from __future__ import annotations

import json

from PIL import Image, ImageDraw

from cuneidet.cli.oracle import main
from tests.integration.test_cli import run_app
from tests.unit.test_oracle import make_jiaguwen


def test_train_then_rank_a_drawing(tmp_path, capsys):
    make_jiaguwen(tmp_path / "data")
    run_dir = tmp_path / "run"
    run_app(
        "train",
        "experiment=oracle_bone",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={run_dir}",
        "model.net.num_classes=6",
        "model.net.pretrained=false",
        "trainer.max_epochs=2",
        "trainer.max_time=null",
        "data.samples_per_epoch=16",
        "data.batch_size=8",
        "data.num_workers=0",
        "callbacks.channels_last.enabled=false",
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("heldout_top1", "heldout_top5", "heldout_top10", "train_top1", "ece"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["heldout_images"] == 4 and summary["test_characters"] == 4
    assert summary["heldout_top10"] == 1.0  # 6 characters: the top 10 hold every one
    assert (run_dir / "test" / "reliability.png").is_file()
    drawing = tmp_path / "drawing.png"
    image = Image.new("RGB", (200, 200), "white")
    ImageDraw.Draw(image).line([(20, 30), (180, 170)], fill="black", width=8)
    image.save(drawing)
    ckpt = str(run_dir / "checkpoints" / "best.ckpt")

    def oracle(*args: str) -> tuple[int, str]:
        code = main(["predict", *args, "--ckpt", ckpt])
        return code, capsys.readouterr().out

    code, out = oracle(str(drawing))
    assert code == 0 and "rank" in out and "probability" in out
    assert sum(ch in out for ch in "一二三上下中") == 6
    blank = tmp_path / "blank.png"
    Image.new("RGB", (50, 50), "white").save(blank)
    code, out = oracle(str(blank))
    assert code == 2 and "draw a character first" in out
    other = make_jiaguwen(tmp_path / "other", {"甲": 2, "乙": 2})
    code, out = oracle(str(drawing), "--index", str(other))
    assert code == 2 and "another character set" in out
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    code, out = oracle(str(text))
    assert code == 2 and "cannot read" in out
