"""Grid search over the VAE's hyper-parameters, keeping the model with the lowest w * loss + FID.

    python grid_search.py                                   # the default grid, ~15 min on 2 CPU cores
    python grid_search.py --lr 1e-3 3e-4 --latent 16 32 --epochs 10
    python grid_search.py --grid grid.json --shard 3/8      # one share of eight (e.g. SLURM --array=1-8)
    python grid_search.py --summarize runs/grid             # merge the shards' results, rank, plot

Each configuration is trained by train.train() (the loop train.py runs), then scored by its best
validation loss and by the FID of N images decoded from z ~ N(0, I) against N validation images, with
N = min(--fid-samples, size of the validation split) on both sides (FID is biased by N: unequal or
varying N would not compare); the same N and seed for every configuration, recorded as fid_n:

    score = w * loss + FID

Why w (--loss-weight) and its default. The loss is per image: recon_weight * (1 - SSIM) + beta * KLD
with recon_weight = 3 * 64 * 64 = 12,288 pixel values (losses.py), so it is in the thousands while FID
is ~10-300. Dividing the loss by 12,288 turns it into a per-pixel-value quantity, mean (1 - SSIM) plus
beta * KLD nats per pixel value, which runs from 0 (perfect) to about 1 (no structure in common), like
a normalised error. Multiplying by 300 stretches that unit range onto the range FID takes in practice
(~0 for matching image sets, ~300 for unrelated ones), so both terms weigh a full swing from perfect to
useless equally. Hence w = 300 / 12,288 ~ 0.0244: a gain of 0.01 in SSIM is worth 3 FID points.
w = 0 ranks by FID alone; w = 1 ranks almost by loss alone. The score is recomputed from the stored
loss and FID, so `--summarize DIR --loss-weight W` re-ranks without retraining.

Results go one JSON line per finished configuration into OUT/results-K-of-N.jsonl. A rerun skips what
is recorded, so kill -9 at any moment costs at most the configuration in flight; that configuration
continues from its run folder OUT/runs/<config id>/last.pt when one was saved.
"""
import argparse
import csv
import hashlib
import itertools
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from tqdm import tqdm

import train
from checkpoint import belongs_to, load_checkpoint
from cli import InputError, Parser, exit_on_input_error, flag
from config import TrainConfig
from data import load_galaxies
from devices import pick_device
from files import RUNS_DIR, atomic_output
from losses import TrainingDiverged
from model import decode_latents, standard_normal_latents
from plots import save_figure

LOSS_WEIGHT = 300 / (3 * 64 * 64)  # see the module docstring
# name: type; the values' validity rules are TrainConfig.check's, the same as train.py's
AXES = {"batch_size": int, "lr": float, "base_channels": int, "latent": int, "layers": int, "beta": float,
        "upsample": str, "res_blocks": int, "l1_weight": float, "adversarial": float, "decoder_noise": bool,
        "disc_augment": bool, "disc_channels": int, "lecam": float, "sky_noise": float}
# Small enough for 2 CPU cores: 8 configurations, 3 epochs each, FID on 256 samples, ~15 minutes in all.
DEFAULT_GRID = {"batch_size": [64], "lr": [1e-3, 3e-3], "base_channels": [32], "latent": [16, 64],
                "layers": [4], "beta": [0.5, 2.0], "upsample": ["transpose"], "res_blocks": [0], "l1_weight": [0.0],
                "adversarial": [0.0], "decoder_noise": [False], "disc_augment": [False], "disc_channels": [32],
                "lecam": [0.0], "sky_noise": [0.0]}
# named in ids only when not the default
EXTRA_AXES = ("upsample", "res_blocks", "l1_weight", "adversarial", "decoder_noise", "disc_augment",
              "disc_channels", "lecam", "sky_noise")
RESULTS_GLOB = "results-*-of-*.jsonl"


def boolean(text):
    """An on/off axis value on the command line: true/false (yes/no, on/off, 1/0)."""
    value = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False,
             "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r}: must be true or false")
    return value


def validate_axes(axes):
    """Sorted, de-duplicated, checked axis values; raises InputError naming the bad one."""
    clean = {}
    for key, values in axes.items():
        if key not in AXES:
            raise InputError(f"unknown axis {key!r}: choose from {', '.join(AXES)}")
        kind = AXES[key]
        if not isinstance(values, list) or not values:
            raise InputError(f"{flag(key)}: give a non-empty list of values, got {values!r}")
        for v in values:
            if kind in (str, bool):
                ok_type = isinstance(v, kind)
            else:
                ok_type = isinstance(v, (int, float)) and not isinstance(v, bool) and (kind is float or v == int(v))
            if not ok_type:
                rule = {str: "a name", bool: "true or false", int: "a whole number", float: "a number"}[kind]
                raise InputError(f"{flag(key)} {v!r}: must be {rule}")
            TrainConfig(**{key: kind(v)}).check()
        # Sorting makes the grid, its id and its shards independent of the order values were typed in.
        clean[key] = sorted({kind(v) for v in values})
    return clean


def read_grid_file(path):
    try:
        axes = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a readable JSON grid file ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(axes, dict):
        raise InputError(f"{path}: a grid file is a JSON object of axis: [values], e.g. {{\"lr\": [0.001]}}")
    unknown = [name for name in axes if name.replace("-", "_") not in AXES]
    if unknown:
        raise InputError(f"{path}: unknown axis {unknown[0]!r}; choose from {', '.join(AXES)}")
    return {name.replace("-", "_"): values for name, values in axes.items()}


def expand_grid(axes):
    """Every combination of the axis values, as dicts in a fixed order (the AXES order); an axis left out
    takes its DEFAULT_GRID values."""
    return [dict(zip(AXES, values)) for values in itertools.product(*(axes.get(name, DEFAULT_GRID[name])
                                                                       for name in AXES))]


def shard(configs, k, n):
    """The k-th (1-based) of n shares. Round robin rather than blocks: neighbours in the grid differ
    in one axis only, so this spreads slow (wide, deep) configurations evenly over the machines."""
    return configs[k - 1::n]


def parse_shard(text):
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise InputError(f"--shard {text}: write K/N with 1 <= K <= N, e.g. 2/8")
    return int(match[1]), int(match[2])


def config_id(config):
    # Readable and deterministic; repr() of a float is its shortest exact form, so ids never collide.
    return (f"bs{config['batch_size']}-lr{config['lr']!r}-ch{config['base_channels']}-z{config['latent']}"
            f"-L{config['layers']}-beta{config['beta']!r}"
            + "".join(f"-{k}{config[k]!r}".replace("'", "") for k in EXTRA_AXES
                      if config.get(k, DEFAULT_GRID[k][0]) != DEFAULT_GRID[k][0]))


def grid_id(axes, settings):
    """Hash of what determines the results. The device is left out: shards of one grid may run on
    different machines."""
    ident = {"axes": axes, **{k: v for k, v in settings.items() if k != "device"}}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


def append_result(path, record):
    """Append one JSON line with a single write on an O_APPEND file, then fsync: a crash leaves either
    the whole line or none of it."""
    line = (json.dumps(record, allow_nan=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.write(fd, line) != len(line):
            raise OSError(f"{path}: short write")
        os.fsync(fd)
    finally:
        os.close(fd)


def drop_partial_line(path):
    """Cut a trailing line without newline (left by a crash outside our single write), so the next
    appended line does not fuse with it."""
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            os.truncate(path, data.rfind(b"\n") + 1)


def read_results(path):
    pieces = Path(path).read_bytes().split(b"\n")
    records = []
    for number, raw in enumerate(pieces[:-1], 1):  # pieces[-1] is empty or a partial line: ignored
        try:
            record = json.loads(raw)
            record["grid"], record["id"], record["config"]
        except (ValueError, TypeError, KeyError):
            raise InputError(f"{path}:{number}: not a grid_search results line") from None
        records.append(record)
    return records


def load_results(folder, grid=None):
    """All results in `folder`, one per configuration; refuses files from another grid."""
    merged, grids = {}, {}
    for path in sorted(Path(folder).glob(RESULTS_GLOB)):
        for record in read_results(path):
            grids.setdefault(record["grid"], path)
            if grid is not None and record["grid"] != grid:
                raise InputError(f"{path}: results of another grid ({record['grid']}, this one is {grid}: other axes, "
                                 "settings or data); "
                                 "use another --out or move that file away")
            # Results written before an axis existed ran at its default value.
            record["config"] = {name: DEFAULT_GRID[name][0] for name in AXES} | record["config"]
            merged.setdefault(record["id"], record)
    if len(grids) > 1:
        raise InputError(f"{folder}: results of {len(grids)} different grids "
                         f"({', '.join(f'{g} in {p.name}' for g, p in grids.items())})")
    return list(merged.values())


def score_of(record, loss_weight):
    if record["status"] != "ok":
        return math.inf
    score = loss_weight * record["val_loss"] + record["fid"]
    return score if math.isfinite(score) else math.inf


def rank(records, loss_weight=LOSS_WEIGHT):
    """Rows sorted by score (ties by id, so every merge ranks alike); failed runs score inf."""
    rows = [{"id": r["id"], **r["config"], "val_loss": r.get("val_loss"), "fid": r.get("fid"), "fid_n": r.get("fid_n"),
             "score": score_of(r, loss_weight), "status": r["status"], "seconds": r["seconds"],
             "checkpoint": r.get("checkpoint")} for r in records]
    return sorted(rows, key=lambda row: (row["score"], row["id"]))


def plot_scores(rows, path):
    """Score against each hyper-parameter that the grid varies, one panel per axis (the fixed ones are
    named in the title); the best configuration in red."""
    finite = [row for row in rows if math.isfinite(row["score"])]
    if not finite:
        return
    varied = [name for name in AXES if len({row[name] for row in finite}) > 1] or list(AXES)[:1]
    fixed = ", ".join(f"{name} {finite[0][name]}" for name in AXES if name not in varied)
    fig, axes = plt.subplots(1, len(varied), figsize=(4 * len(varied), 4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], varied):
        ax.scatter([row[name] for row in finite], [row["score"] for row in finite], alpha=0.7)
        ax.scatter([finite[0][name]], [finite[0]["score"]], color="red", marker="*", s=150, label="best")
        ax.set(xlabel=name, xscale="log" if name == "lr" else "linear")
        values = sorted({row[name] for row in finite})
        ax.set_xticks(values, [v if isinstance(v, str) else f"{v:g}" for v in values])
        ax.minorticks_off()
    axes[0, 0].set_ylabel("w * loss + FID")
    axes[0, 0].legend()
    if fixed:
        fig.suptitle(f"fixed: {fixed}", fontsize=9)
    save_figure(fig, path)


def summarize(folder, loss_weight=LOSS_WEIGHT, grid=None):
    """Rank what `folder` holds: print the table, write results.csv, scores.png and best.pt."""
    folder = Path(folder)
    records = load_results(folder, grid)
    if not records:
        raise InputError(f"{folder}: no results ({RESULTS_GLOB}) to summarize")
    rows = rank(records, loss_weight)
    expected = max(r["n_configs"] for r in records)
    columns = ["rank", "id", *AXES, "val_loss", "fid", "fid_n", "score", "status", "seconds", "checkpoint"]
    with atomic_output(folder / "results.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows({"rank": i, **row} for i, row in enumerate(rows, 1))
    print(f"{len(rows)} of {expected} configurations finished; score = {loss_weight:.4g} * loss + FID")
    print(f"{'rank':>4}  {'configuration':<44} {'val loss':>9} {'FID':>7} {'score':>8}  FID of N = "
          f"{', '.join(sorted({str(row['fid_n']) for row in rows}))} images a side")
    for i, row in enumerate(rows, 1):
        numbers = (f"{row['val_loss']:9.1f} {row['fid']:7.2f} {row['score']:8.2f}" if row["status"] == "ok"
                   else f"{'failed':>26}")
        print(f"{i:4d}  {row['id']:<44} {numbers}")
    plot_scores(rows, folder / "scores.png")
    best = rows[0]
    if math.isfinite(best["score"]):
        with atomic_output(folder / "best.pt") as tmp:
            shutil.copyfile(folder / best["checkpoint"], tmp)
        print(f"best: {best['id']} -> {folder / 'best.pt'}; table {folder / 'results.csv'}, "
              f"plot {folder / 'scores.png'}")
    return rows


def fid_n(galaxies, fid_samples):
    """The N of every FID in a grid: --fid-samples, capped by the validation split (both sides use N)."""
    return min(fid_samples, len(galaxies.val_x))


def fid_scorer(galaxies, num_samples, seed, device):
    """A function model -> FID of `num_samples` generated images against as many validation images
    (num_samples <= the split's size: see fid_n); Inception is loaded once, the real statistics come
    from fid.py's cache."""
    import fid  # imported here so that --summarize and bad-input exits do not pay for it
    inception = fid.load_inception(device=device)
    real = fid.real_statistics(galaxies, "val", num_samples, seed, device=device, progress=False, model=inception)

    def score(model):
        images = decode_latents(model, standard_normal_latents(num_samples, model.latent_dim, seed))
        acts = fid.get_activations(images, inception, device=device, progress=False)
        return fid.frechet_distance(*fid.calculate_statistics(acts), *real)
    return score


def run_config(config, out, galaxies, score_fid):
    """Train one configuration and measure it; returns the metrics for its results line."""
    run_dir = Path(config.out)
    resume = belongs_to(run_dir / "last.pt", config)
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)  # leftovers of another configuration or of a half-saved first epoch
    try:
        result = train.train(config, galaxies=galaxies, progress=False, resume=resume)
    except TrainingDiverged as e:
        return {"status": "failed", "error": str(e), "val_loss": None, "fid": None, "checkpoint": None}
    model, _ = load_checkpoint(result["best"], pick_device(config.device))
    fid_value = float(score_fid(model))
    if not math.isfinite(fid_value):
        return {"status": "failed", "error": f"FID is {fid_value}", "val_loss": None, "fid": None,
                "checkpoint": None}
    return {"status": "ok", "val_loss": result["best_val_loss"], "fid": fid_value,
            "checkpoint": str(result["best"].relative_to(out))}


def run_grid(axes, settings, out, shard_k=1, shard_n=1, loss_weight=LOSS_WEIGHT, score_fid=None,
             progress=True):
    """Run this shard's unfinished configurations, then summarize everything in `out`.
    `settings`: data, max_per_class, epochs, warmup_epochs, seed, device, fid_samples.
    `score_fid`: model -> FID; None uses fid.py (tests pass a cheap stand-in)."""
    out = Path(out)
    galaxies = load_galaxies(settings["data"], max_per_class=settings["max_per_class"], seed=settings["seed"],
                             progress=progress)
    grid = grid_id(axes, settings | {"data": galaxies.key})
    configs = expand_grid(axes)
    mine = shard(configs, shard_k, shard_n)
    results_path = out / f"results-{shard_k}-of-{shard_n}.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    drop_partial_line(results_path)
    done = {r["id"] for r in load_results(out, grid)}
    todo = [c for c in mine if config_id(c) not in done]
    print(f"grid {grid}: {len(configs)} configurations; shard {shard_k}/{shard_n} has {len(mine)}, "
          f"{len(mine) - len(todo)} already done, {len(todo)} to run; results in {results_path}")
    n = fid_n(galaxies, settings["fid_samples"])
    if todo and score_fid is None:
        score_fid = fid_scorer(galaxies, n, settings["seed"], pick_device(settings["device"]))
    shared = {k: settings[k] for k in ("data", "max_per_class", "epochs", "warmup_epochs", "seed", "device")}
    for i, config in enumerate(tqdm(todo, desc="configurations", unit="config", disable=not progress), 1):
        cid, start = config_id(config), time.time()
        train_config = TrainConfig(**config, **shared, out=str(out / "runs" / cid))
        metrics = run_config(train_config, out, galaxies, score_fid)
        record = {"grid": grid, "n_configs": len(configs), "id": cid, "config": config, **metrics, "fid_n": n,
                  "loss_weight": loss_weight, "seconds": round(time.time() - start, 1),
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        score = score_of(record, loss_weight)
        record["score"] = score if math.isfinite(score) else None  # strict JSON has no Infinity
        append_result(results_path, record)
        summary = (f"val loss {record['val_loss']:.1f}  FID {record['fid']:.2f} (N={n})  score {record['score']:.2f}"
                   if metrics["status"] == "ok" else f"FAILED ({metrics['error']})")
        tqdm.write(f"[{len(mine) - len(todo) + i}/{len(mine)}] {cid}: {summary}  ({record['seconds']:.0f} s)")
    return summarize(out, loss_weight, grid)


def parse_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", metavar="FILE", help='JSON axes, e.g. {"lr": [0.001, 0.0003], "latent": [16, 32]}')
    for name, kind in AXES.items():
        p.add_argument(flag(name), type=boolean if kind is bool else kind, nargs="+", metavar="V",
                       help=f"values to try (default {' '.join(map(str, DEFAULT_GRID[name]))})")
    p.add_argument("--epochs", type=int, default=3, help="epochs per configuration")
    p.add_argument("--warmup-epochs", type=int, default=1, help="beta warm-up epochs (< --epochs)")
    p.add_argument("--max-per-class", type=int, help="cap per class, for quick grids")
    p.add_argument("--data", help="as in train.py (default: data/Galaxy10_DECals.h5, else the embedded set)")
    p.add_argument("--seed", type=int, default=0, help="training, split and FID sampling seed")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--fid-samples", type=int, default=256, help="generated and real images per FID (capped by "
                   "the validation split's size)")
    p.add_argument("--loss-weight", type=float, default=LOSS_WEIGHT, help="w in w * loss + FID (default "
                   "300/12288: 1 - SSIM per pixel value over its range counts like FID over 0-300)")
    p.add_argument("--out", default=str(RUNS_DIR / "grid"), help="results folder (default runs/grid)")
    p.add_argument("--shard", default="1/1", metavar="K/N", help="run only the K-th of N shares of the grid")
    p.add_argument("--summarize", metavar="DIR", help="only merge and rank the results in DIR")
    return p.parse_args(argv)


def check_settings(args):
    if args.epochs < 1 or args.warmup_epochs < 0 or args.warmup_epochs >= args.epochs:
        # The best val loss must be measured at the target beta, or grids over beta compare apples and pears.
        raise InputError(f"--epochs {args.epochs} / --warmup-epochs {args.warmup_epochs}: need 0 <= warm-up < epochs")
    if args.max_per_class is not None and args.max_per_class < 1:
        raise InputError(f"--max-per-class {args.max_per_class}: must be at least 1")
    if args.fid_samples < 2:
        raise InputError(f"--fid-samples {args.fid_samples}: FID needs at least 2 images")
    if not 0 <= args.loss_weight < math.inf:
        raise InputError(f"--loss-weight {args.loss_weight}: must be >= 0")
    pick_device(args.device)


@exit_on_input_error
def main(argv=None):
    args = parse_args(argv)
    if args.summarize:
        if not Path(args.summarize).is_dir():
            raise InputError(f"{args.summarize}: no such folder")
        summarize(args.summarize, args.loss_weight)
        return
    check_settings(args)
    shard_k, shard_n = parse_shard(args.shard)
    axes = DEFAULT_GRID | (read_grid_file(args.grid) if args.grid else {})
    axes |= {name: getattr(args, name) for name in AXES if getattr(args, name) is not None}
    settings = {k: getattr(args, k) for k in ("data", "max_per_class", "epochs", "warmup_epochs", "seed",
                                              "device", "fid_samples")}
    run_grid(validate_axes(axes), settings, args.out, shard_k, shard_n, args.loss_weight)


if __name__ == "__main__":
    main()
