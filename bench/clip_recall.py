"""Clip-level recall and false-positive rate of a model over every real clip of ../shared/data.

    .venv/bin/python bench/clip_recall.py --model ../shared/peers/seed/wake_word_stop_lite.tflite --threshold 0.5

Each one-second Speech Commands clip goes through `kwsd detect`'s path (kwsd.detect.detect_file:
one window per clip, the seed README's way of scoring); a clip counts as detected if the
detector fires. This is the figure the README quotes for the tutorial's model (its own
README: recall 60.9%, false positives 1.06%). For the bundled model use the held-out
speakers instead (kwsd-train evaluate, see kwsd/models/MODEL_CARD.md): it trained on most
of these clips.
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kwsd.detect import detect_file  # noqa: E402
from kwsd.model import BUNDLED_MODEL, load_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=BUNDLED_MODEL)
    ap.add_argument("--threshold", type=float, default=None, help="default: the model's own")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "speech_commands"))
    args = ap.parse_args()
    model = load_model(args.model)
    settings = model.defaults.with_overrides(threshold=args.threshold)
    fired, total = {}, {}
    for folder in sorted(p for p in Path(args.data).iterdir() if p.is_dir()):
        if folder.name.startswith("_"):
            continue
        for clip in sorted(folder.glob("*.wav")):
            hits = []
            detect_file(clip, model, settings, lambda e: hits.append(e.kind == "detection"))
            key = "stop" if folder.name == model.keyword else "other"
            fired[key] = fired.get(key, 0) + any(hits)
            total[key] = total.get(key, 0) + 1
    print(f"{Path(args.model).name} at threshold {settings.threshold}: recall "
          f"{fired['stop'] / total['stop']:.1%} ({fired['stop']}/{total['stop']}), false positives "
          f"{fired['other'] / total['other']:.2%} ({fired['other']}/{total['other']})")


if __name__ == "__main__":
    main()
