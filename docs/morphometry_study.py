"""The morphology measure's check and summary over seeds:
`python docs/morphometry_study.py EVAL_DIR [EVAL_DIR ...]`.

For each EVAL_DIR (a folder holding generate.py --evaluate's evaluation.json, measured with morphology):
- the check: real validation galaxies (the same n_k per class) against the real test galaxies, over the
  floor of real training galaxies, exactly as --evaluate compares what a model draws (the validation
  galaxies are measured anew; the test and training tables come from the cache --evaluate filled). A
  measure that is right scores about 1 here;
- the mean W1 / floor per class of the reconstructions and each sampler, and every statistic's ratio.
Then, over the EVAL_DIRs, each class's mean ratio as mean +- sd. One JSON line per EVAL_DIR, then the summary."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import morphometry  # noqa: E402
from checkpoint import load_checkpoint  # noqa: E402
from data import checkpoint_galaxies  # noqa: E402
from evaluation import class_subset, training_pool  # noqa: E402


def real_against_real(checkpoint, counts, seed, split="test"):
    """Mean W1 / floor per class (and per statistic) of the real validation galaxies against the `split` ones."""
    _, saved = load_checkpoint(checkpoint, "cpu")
    galaxies = checkpoint_galaxies(saved, progress=False)
    held_x, held_y = galaxies.split(split)
    result = {}
    for k, n in counts.items():
        real = morphometry.measure_cached(held_x[class_subset(held_y, k, n, seed)], desc=f"{split} {k}")
        pool = morphometry.measure_cached(training_pool(galaxies, k, n, seed), desc=f"train {k}")
        val = morphometry.measure_cached(galaxies.val_x[class_subset(galaxies.val_y, k, n, seed)], desc=f"val {k}")
        result[str(k)] = morphometry.compare(val, real, pool, n, seed=seed)
    return result


def print_statistics(lines):
    """A markdown table: each statistic's W1 / floor per set and class, mean over the evaluations."""
    sets = list(dict.fromkeys(name for line in lines for name in line["ratio"]))  # a sampler some evaluations lack
    classes = list(lines[0]["ratio"][sets[0]])
    print("| statistic | " + " | ".join(f"{name}, {k}" for name in sets for k in classes) + " |")
    print("| --- " * (1 + len(sets) * len(classes)) + "|")
    for stat in morphometry.NAMES:
        cells = []
        for name in sets:
            for k in classes:
                values = [line["ratio"][name][k][stat] for line in lines
                          if name in line["ratio"] and line["ratio"][name][k][stat] is not None]
                cells.append(f"{np.mean(values):.2f}" if values else "-")
        print(f"| {stat} | " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("evaluations", nargs="+", help="folders with evaluation.json")
    args = parser.parse_args()
    summary, lines = {}, []
    for folder in map(Path, args.evaluations):
        result = json.loads((folder / "evaluation.json").read_text())
        shapes, seed = result["morphology"], result["seed"]
        counts = {int(k): n for k, n in shapes["n"]["real"].items()}
        check = real_against_real(result["checkpoint"], counts, seed)
        rows = {"real validation": check, "reconstructions": shapes["reconstructions"]} | {
            f"{kind} samples": t for kind, t in shapes["samplers"].items()}
        line = {"evaluation": str(folder), "n": shapes["n"]["real"], "failures": shapes["failures"],
                "mean_ratio": {name: {k: c["mean_ratio"] for k, c in t.items()} for name, t in rows.items()},
                "ratio": {name: {k: {s: c[s]["ratio"] for s in morphometry.NAMES} for k, c in t.items()}
                          for name, t in rows.items()}}
        print(json.dumps(line))
        lines.append(line)
        for name, by_class in line["mean_ratio"].items():
            for k, value in by_class.items():
                summary.setdefault(name, {}).setdefault(k, []).append(value)
    print_statistics(lines)
    print("mean W1 / floor per class, mean +- sd over the evaluations:")
    for name, by_class in summary.items():
        cells = "  ".join(f"{k}: {np.mean(v):.2f} +- {np.std(v, ddof=1) if len(v) > 1 else 0:.2f}"
                          for k, v in by_class.items())
        print(f"  {name:<22}{cells}")


if __name__ == "__main__":
    main()
