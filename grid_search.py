"""Grid search over the VAE's hyper-parameters, keeping the model with the lowest w * loss + FID.

    python grid_search.py                                   # the default grid, ~15 min on 2 CPU cores
    python grid_search.py --lr 1e-3 3e-4 --latent 16 32 --epochs 10
    python grid_search.py --grid grid.json --out /shared/grid      # one worker; start as many as you like
    python grid_search.py --grid grid.json --workers-per-device 4  # four trainings at once on one GPU
    python grid_search.py --summarize runs/grid             # rank what is finished, plot, copy the best

Each configuration is trained by train.train() (the loop train.py runs), then scored by its best
validation loss and by the FID of N images decoded from z ~ N(0, I) against N validation images, with
N = min(--fid-samples, size of the validation split) on both sides (FID is biased by N: unequal or
varying N would not compare); the same N and seed for every configuration, recorded as fid_n:

    score = w * loss + FID

Why w (--loss-weight) and its default. The loss is per image: recon_weight * (1 - SSIM) + beta * KLD
with recon_weight = 3 * 64 * 64 = 12,288 pixel values (losses.py), so it is in the thousands while FID
is ~10-300: w says how many FID points a unit of loss is worth. w = 0.15 makes a gain of 0.01 in SSIM
worth 18 FID points (0.15 * 122.9), measured where it matters: in the seed study on real SDSS galaxies
(docs/seed-findings.md) the FID of a grid's configurations spread over ~90 points and their SSIM over 0.02,
so the earlier w = 300 / 12,288 (0.01 of SSIM worth 3 FID points) ranked by FID alone and picked the end of
the SSIM-FID front with the largest beta, whose class samples were no better (FID, judges, morphology, 3
seeds on validation) and whose reconstructions were worse (SSIM -0.0045, morphology 2.5 against 2.1 times
the floor). w in [0.075, 0.28] picks the front's knee there, on each of 3 seeds at 0.15 (0.1 and 0.2 miss
on one seed each). The KLD term, beta * KLD, counts in the loss too, so a larger w also charges beta.
w = 0 ranks by FID alone; w = 1 ranks almost by loss alone. The score is recomputed from the stored
loss and FID, so `--summarize DIR --loss-weight W` re-ranks without retraining. Beside the ranking,
trade_off.png shows what the grid trades: each configuration's validation SSIM (of best.pt's epoch, in
results.csv) against its FID, coloured by beta, marked by latent size, the pick ringed (plots.plot_trade_off).

The grid is an Optuna study: its GridSampler hands out the configurations, its storage keeps the study,
so any number of workers that run the same command (terminals, a SLURM array, machines) each pull the
next configuration. The storage is a journal file in --out by default (OUT/optuna-journal.log: workers
with the same --out share it, on one machine or a shared filesystem), or --storage: a journal file
elsewhere, or a database URL (postgresql://..., mysql://...). A worker records a heartbeat while it
trains; one silent for 3 beats (kill -9, a preempted job, a lost machine) is taken for dead, and its
configuration is retried by another worker, from its own run folder OUT/runs/<config id>/last.pt. A
finished configuration is never trained again, and one that diverges is recorded once, as failed. A
worker with nothing left to start waits for the configurations still in progress elsewhere (to take
over any whose worker dies), then ranks. --prune stops configurations whose validation loss lags
behind at successive-halving rungs (Optuna's SuccessiveHalvingPruner); off by default, so the grid
is exhaustive.
"""
import argparse
import csv
import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import shutil
import socket
import sys
import time
import warnings
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState
from tqdm import tqdm

import train
from checkpoint import load_checkpoint, resume_mismatch
from cli import InputError, Parser, check_writable_folder, exit_on_input_error, flag
from config import TrainConfig
from data import load_galaxies
from devices import pick_device
from files import RUNS_DIR, atomic_output, set_aside
from losses import TrainingDiverged
from model import decode_latents, standard_normal_latents
from plots import plot_trade_off, save_figure
from study_storage import JOURNAL, is_url, open_storage, shown

LOSS_WEIGHT = 0.15  # FID points per unit of loss: see the module docstring
# name: type; the values' validity rules are TrainConfig.check's, the same as train.py's
AXES = {"batch_size": int, "lr": float, "base_channels": int, "latent": int, "layers": int, "beta": float,
        "recon_loss": str, "upsample": str, "res_blocks": int, "l1_weight": float, "adversarial": float, "decoder_noise": bool,
        "augment": bool, "disc_augment": bool, "disc_channels": int, "lecam": float, "sky_noise": float}
# Small enough for 2 CPU cores: 8 configurations, 3 epochs each, FID on 256 samples, ~15 minutes in all.
DEFAULT_GRID = {"batch_size": [64], "lr": [1e-3, 3e-3], "base_channels": [32], "latent": [16, 64],
                "layers": [4], "beta": [0.5, 2.0], "recon_loss": ["ssim"], "upsample": ["transpose"], "res_blocks": [0], "l1_weight": [0.0],
                "adversarial": [0.0], "decoder_noise": [False], "augment": [False], "disc_augment": [False],
                "disc_channels": [32], "lecam": [0.0], "sky_noise": [0.0]}
# named in ids only when not the default
EXTRA_AXES = ("recon_loss", "upsample", "res_blocks", "l1_weight", "adversarial", "decoder_noise", "augment", "disc_augment",
              "disc_channels", "lecam", "sky_noise")
FOLDER_RECORD = "study.json"    # which grid and study --out belongs to, and where the study is kept
RUN_RECORD = "grid_result.json"  # in each run folder: its configuration's results, as its trial holds them
HEARTBEAT = 30                  # seconds between a training worker's beats; silent for 3 beats = dead
MAX_RETRIES = 3                 # a configuration whose worker dies more often than this is given up, as failed
LIVE, DONE = (TrialState.RUNNING, TrialState.WAITING), (TrialState.COMPLETE, TrialState.PRUNED)
WORKER = f"{socket.gethostname()}:{os.getpid()}"

warnings.filterwarnings("ignore", category=ExperimentalWarning)  # heartbeat and retry are marked experimental
optuna.logging.set_verbosity(optuna.logging.WARNING)  # each worker prints its own line per configuration
# ... and reports a stopped trial itself (a crash by its traceback, Ctrl-C in one line): not twice.
logging.getLogger("optuna.study._optimize").addFilter(lambda record: not record.getMessage().startswith("Trial "))


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
        # Sorting makes the grid and its id independent of the order values were typed in.
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


def full_axes(axes):
    """Every axis with its values, in the AXES order; an axis left out takes its DEFAULT_GRID values."""
    return {name: list(axes.get(name, DEFAULT_GRID[name])) for name in AXES}


def expand_grid(axes):
    """Every combination of the axis values, as dicts in a fixed order (the AXES order)."""
    return [dict(zip(AXES, values)) for values in itertools.product(*full_axes(axes).values())]


def config_id(config):
    # Readable and deterministic; repr() of a float is its shortest exact form, so ids never collide.
    return (f"bs{config['batch_size']}-lr{config['lr']!r}-ch{config['base_channels']}-z{config['latent']}"
            f"-L{config['layers']}-beta{config['beta']!r}"
            + "".join(f"-{k}{config[k]!r}".replace("'", "") for k in EXTRA_AXES
                      if config.get(k, DEFAULT_GRID[k][0]) != DEFAULT_GRID[k][0]))


def grid_id(axes, settings):
    """Hash of what determines the results. The device is left out: workers of one grid may run on
    different machines."""
    ident = {"axes": full_axes(axes), **{k: v for k, v in settings.items() if k != "device"}}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


def claim_folder(out, record):
    """Record in OUT which grid its run folders and study belong to; refuse a folder of another grid, or
    the same grid kept in another storage (its finished configurations would be trained again)."""
    path = Path(out) / FOLDER_RECORD
    if path.is_file():
        try:
            old = json.loads(path.read_text())
            old["grid"], old["storage"]
        except (OSError, ValueError, TypeError, KeyError):
            raise InputError(f"{path}: not a grid_search study record") from None
        if old["grid"] != record["grid"]:
            raise InputError(f"{out}: holds the grid {old['grid']} (other axes, settings or data; this one is "
                             f"{record['grid']}); use another --out or move that folder away")
        if old["storage"] != record["storage"]:
            raise InputError(f"{out}: its study is kept in {old['storage'] or Path(out) / JOURNAL}, not in "
                             f"{record['storage'] or Path(out) / JOURNAL}; give the same --storage "
                             "(none: the default)")
        return
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1))


def read_folder_record(folder):
    path = Path(folder) / FOLDER_RECORD
    if not path.is_file():
        raise InputError(f"{folder}: no grid study here ({FOLDER_RECORD} missing)")
    try:
        record = json.loads(path.read_text())
        record["study"], record["n_configs"], record["storage"]
    except (OSError, ValueError, TypeError, KeyError):
        raise InputError(f"{path}: not a grid_search study record") from None
    return record


# ------------------------------------------------------------------------------------------------
# Which trial trains which configuration
# ------------------------------------------------------------------------------------------------

def trial_config(trial):
    """The configuration a trial holds, or None before it has drawn one."""
    if all(name in trial.params for name in AXES):
        return {name: trial.params[name] for name in AXES}
    return None


def queued(trial):
    """Queued by requeue(): a retry (Optuna's retry callback) or a configuration no trial held."""
    return "failed_trial" in trial.system_attrs or "fixed_params" in trial.system_attrs


def holder(trials, config, n_configs):
    """The number of the one trial that trains `config`, or None. GridSampler gives the k-th trial the k-th
    configuration for k < N (the grid's size); retries are queued only after that (requeue), so they never
    take such a number. Any other trial asked for (two workers asking for the last configuration at
    once) is surplus. Of the trials holding one configuration, alive or done, the lowest number trains:
    two workers queueing one retry at once give two holders, and each sees the other."""
    numbers = [t.number for t in trials if t.state in LIVE + DONE and (t.number < n_configs or queued(t))
               and "surplus" not in t.user_attrs and trial_config(t) == config]
    return min(numbers, default=None)


def tally(trials):
    """The grid's state in its trials: ({config id: the trial that finished it}, {config ids in progress},
    {config id: its last failed attempt, to retry}). A trial FAILs only when its worker died, crashed or
    was interrupted (a configuration that diverges is COMPLETE, with an infinite score); one whose workers
    died or crashed more than MAX_RETRIES times (Ctrl-C does not count) is finished, as failed."""
    finished, running, failed = {}, set(), {}
    for t in sorted(trials, key=lambda t: t.number):
        config = trial_config(t)
        if config is None or "surplus" in t.user_attrs:
            continue
        cid = config_id(config)
        if t.state in DONE:
            finished.setdefault(cid, t)
        elif t.state in LIVE:
            running.add(cid)
        elif t.state == TrialState.FAIL:
            failed.setdefault(cid, []).append(t)
    running -= finished.keys()
    open_failed = {cid: attempts for cid, attempts in failed.items() if cid not in finished and cid not in running}
    given_up = {cid: attempts[-1] for cid, attempts in open_failed.items()
                if sum(not t.user_attrs.get("interrupted") for t in attempts) > MAX_RETRIES}
    return finished | given_up, running, {cid: attempts[-1] for cid, attempts in open_failed.items()
                                          if cid not in given_up}


def requeue(study, trials, configs, finished, running, to_retry):
    """Queue what no worker holds once every configuration has been handed out: each failed attempt again
    (Optuna's RetryHeartbeatStaleTrialCallback: same parameters, its epochs' losses kept for the pruner,
    the retry history), and any configuration whose first trial died before it drew one. Not at the
    moment a trial goes stale (the storage's callback): a retry queued earlier would take the trial
    number GridSampler gives to a configuration not yet started. Returns whether it queued anything."""
    retry = RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)
    for attempt in to_retry.values():
        retry(study, attempt)
    if any(t.state == TrialState.RUNNING and trial_config(t) is None for t in trials):
        return bool(to_retry)  # a trial is drawing its configuration right now
    held = finished.keys() | running | to_retry.keys()
    missing = [config for config in configs if config_id(config) not in held]
    for config in missing:
        study.enqueue_trial(config)
    return bool(to_retry or missing)


# ------------------------------------------------------------------------------------------------
# Ranking
# ------------------------------------------------------------------------------------------------

def results(config, attrs):
    """A configuration's results, from what its trial records (its user attributes)."""
    return {"id": config_id(config), "config": config, "status": attrs.get("status") or "pruned",
            "val_loss": attrs.get("val_loss"), "val_ssim": attrs.get("val_ssim"), "fid": attrs.get("fid"),
            "class_fid": attrs.get("class_fid"), "fid_n": attrs.get("fid_n"),
            "seconds": attrs.get("seconds"), "checkpoint": attrs.get("checkpoint"), "error": attrs.get("error")}


def record_of(trial):
    """A finished configuration's results, from its trial."""
    record = results(trial_config(trial), trial.user_attrs)
    if trial.state == TrialState.FAIL:  # given up
        record |= {"status": "failed", "error": f"its worker died or crashed {MAX_RETRIES + 1} times"}
    return record


def write_run_record(run_dir, grid, record):
    """Keep a configuration's results in its run folder too, so that a study that cannot be read any more
    (a damaged journal) does not cost them (run_folder_records)."""
    with atomic_output(Path(run_dir) / RUN_RECORD) as tmp:
        tmp.write_text(json.dumps({"grid": grid, **record}, indent=1))


def run_folder_records(folder, grid):
    """The results that the run folders of `folder` keep for the grid `grid`; an unreadable record is named."""
    records = []
    for path in sorted((Path(folder) / "runs").glob(f"*/{RUN_RECORD}")):
        try:
            record = json.loads(path.read_text())
            record["grid"], record["config"], record["status"]
        except (OSError, ValueError, TypeError, KeyError) as e:
            print(f"warning: {path}: unreadable ({type(e).__name__}), left out", file=sys.stderr)
            continue
        if record["grid"] == grid:
            records.append(record)
    return records


def score_of(record, loss_weight):
    if record["status"] != "ok":
        return math.inf
    score = loss_weight * record["val_loss"] + record["fid"]
    return score if math.isfinite(score) else math.inf


def rank(records, loss_weight=LOSS_WEIGHT):
    """Rows sorted by score, then finished before pruned before failed, then id (so every reading ranks
    alike); pruned and failed configurations score inf."""
    rows = [{"id": r["id"], **r["config"], "val_loss": r.get("val_loss"), "val_ssim": r.get("val_ssim"),
             "fid": r.get("fid"), "class_fid": r.get("class_fid"),
             "fid_n": r.get("fid_n"), "score": score_of(r, loss_weight), "status": r["status"],
             "seconds": r["seconds"], "checkpoint": r.get("checkpoint")} for r in records]
    order = {"ok": 0, "pruned": 1}
    return sorted(rows, key=lambda row: (row["score"], order.get(row["status"], 2), row["id"]))


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


def load_study(folder, storage=None):
    """The study of the grid in `folder` and its size; the storage is --storage, else where the folder's
    record says the workers kept it."""
    record = read_folder_record(folder)
    storage = None if storage is None else str(storage)
    if storage is None and record["storage"] is not None:
        if is_url(record["storage"]):
            raise InputError(f"{folder}: its study is in the database {record['storage']}; "
                             "give --storage with its URL")
        storage = record["storage"]
    opened = open_storage(storage, folder, must_exist=True)
    try:
        return optuna.load_study(study_name=record["study"], storage=opened), record["n_configs"]
    except KeyError:
        raise InputError(f"{shown(storage) or Path(folder) / JOURNAL}: holds no study {record['study']} "
                         f"(the grid of {folder}); give the --storage its workers used") from None


def gather_records(folder, storage=None):
    """What the grid of `folder` has finished: (results, the grid's size, how many are in progress). From its
    study; where the study cannot be read (a damaged journal, a database out of reach), from the records its
    run folders keep, with a warning (in progress: unknown there, 0)."""
    try:
        study, n_configs = load_study(folder, storage)
    except InputError as error:
        record = read_folder_record(folder)
        records = run_folder_records(folder, record.get("grid"))
        if not records:
            raise
        print(f"warning: {error}; ranked instead from the results that {len(records)} run folders keep",
              file=sys.stderr)
        return records, record["n_configs"], 0
    finished, running, _ = tally(study.get_trials(deepcopy=False))
    return [record_of(t) for t in finished.values()], n_configs, len(running)


def summarize(folder, loss_weight=LOSS_WEIGHT, storage=None):
    """Rank what the study of `folder` holds: print the table, write results.csv, scores.png and best.pt."""
    folder = Path(folder)
    records, n_configs, running = gather_records(folder, storage)
    if not records:
        raise InputError(f"{folder}: no configuration finished yet ({running} in progress)")
    rows = rank(records, loss_weight)
    columns = ["rank", "id", *AXES, "val_loss", "val_ssim", "fid", "class_fid", "fid_n", "score", "status", "seconds", "checkpoint"]
    with atomic_output(folder / "results.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows({"rank": i, **row} for i, row in enumerate(rows, 1))
    print(f"{len(rows)} of {n_configs} configurations finished" + (f", {running} in progress" if running else "")
          + f"; score = {loss_weight:.4g} * loss + FID")
    print(f"{'rank':>4}  {'configuration':<44} {'val loss':>9} {'FID':>7} {'score':>8}  FID of N = "
          f"{', '.join(sorted({str(row['fid_n']) for row in rows if row['fid_n'] is not None}))} images a side")
    for i, row in enumerate(rows, 1):
        numbers = (f"{row['val_loss']:9.1f} {row['fid']:7.2f} {row['score']:8.2f}" if row["status"] == "ok"
                   else f"{row['status']:>26}")
        print(f"{i:4d}  {row['id']:<44} {numbers}")
    plot_scores(rows, folder / "scores.png")
    plot_trade_off(rows, folder / "trade_off.png", pick=rows[0]["id"] if math.isfinite(rows[0]["score"]) else None)
    best = rows[0]
    if math.isfinite(best["score"]) and not (folder / best["checkpoint"]).is_file():
        print(f"best: {best['id']}, whose {best['checkpoint']} is not in {folder} (a machine without this --out "
              f"trained it): no best.pt; table {folder / 'results.csv'}, plot {folder / 'scores.png'}")
    elif math.isfinite(best["score"]):
        with atomic_output(folder / "best.pt") as tmp:
            shutil.copyfile(folder / best["checkpoint"], tmp)
        print(f"best: {best['id']} -> {folder / 'best.pt'}; table {folder / 'results.csv'}, "
              f"plots {folder / 'scores.png'}, {folder / 'trade_off.png'}")
    return rows


# ------------------------------------------------------------------------------------------------
# Training and measuring one configuration
# ------------------------------------------------------------------------------------------------

def fid_n(galaxies, fid_samples):
    """The N of every FID in a grid: --fid-samples, capped by the validation split (both sides use N)."""
    return min(fid_samples, len(galaxies.val_x))


def fid_scorer(galaxies, num_samples, seed, device):
    """A function model -> FID of `num_samples` images decoded from z ~ N(0, I) against as many validation
    images (num_samples <= the split's size: see fid_n); Inception is loaded once, the real statistics come
    from fid.py's cache."""
    from evaluation import fid_scorer as scorer  # here, so that --summarize and bad-input exits do not pay for it

    def samples(model, real):
        return decode_latents(model, standard_normal_latents(len(real), model.latent_dim, seed))
    return scorer(galaxies, samples, "val", num_samples, seed, device)[0]


def run_config(config, out, galaxies, score_fid, on_epoch=None):
    """Train one configuration (from its last.pt when that belongs to it) and measure it; returns the
    metrics of its results, and whether it resumed."""
    run_dir = Path(config.out)
    mismatch = resume_mismatch(run_dir / "last.pt", config)
    resume = mismatch is None
    # A folder that is not this configuration's run (another's, or a damaged or half-saved first epoch) is
    # moved aside, never deleted; one holding only a killed write's temporary files has nothing to keep.
    if not resume and run_dir.is_dir() and any(not p.name.startswith(".") for p in run_dir.iterdir()):
        set_aside(run_dir, f"not this configuration's run ({mismatch})", "; training this configuration from the start")
    try:
        result = train.train(config, galaxies=galaxies, progress=False, resume=resume, on_epoch=on_epoch)
    except TrainingDiverged as e:
        return {"status": "failed", "error": str(e), "val_loss": None, "fid": None, "checkpoint": None}, resume
    model, checkpoint = load_checkpoint(result["best"], pick_device(config.device))
    val_ssim = checkpoint["history"][checkpoint["epoch"] - 1]["val_ssim"]  # best.pt's epoch, as its val_loss
    fid_value = float(score_fid(model))
    if not math.isfinite(fid_value):
        return {"status": "failed", "error": f"FID is {fid_value}", "val_loss": None, "fid": None,
                "checkpoint": None}, resume
    return {"status": "ok", "val_loss": result["best_val_loss"], "val_ssim": val_ssim, "fid": fid_value,
            "checkpoint": str(result["best"].relative_to(out))}, resume


class Worker:
    """One worker of a grid's study: trains the configurations it pulls until every one is finished."""

    def __init__(self, axes, settings, out, storage=None, loss_weight=LOSS_WEIGHT, score_fid=None, progress=True,
                 prune=False, heartbeat=HEARTBEAT):
        self.out, self.loss_weight, self.score_fid, self.progress = Path(out), loss_weight, score_fid, progress
        storage = None if storage is None else str(storage)
        self.heartbeat = heartbeat
        opened = open_storage(storage, out, heartbeat)  # a bad --storage is refused before any work
        self.galaxies = load_galaxies(settings["data"], max_per_class=settings["max_per_class"],
                                      seed=settings["seed"], progress=progress)
        self.space = full_axes(axes)
        self.configs = expand_grid(axes)
        self.grid = grid_id(axes, settings | {"data": self.galaxies.fingerprint})
        check_writable_folder(self.out, "--out")
        claim_folder(self.out, {"grid": self.grid, "study": f"grid-{self.grid}", "n_configs": len(self.configs),
                                "storage": shown(storage) if storage is None or is_url(storage)
                                else str(Path(storage).resolve())})
        # seed=0: every worker shuffles the grid alike, so the k-th trial has the same configuration in all.
        self.study = optuna.create_study(
            storage=opened, study_name=f"grid-{self.grid}", direction="minimize", load_if_exists=True,
            sampler=optuna.samplers.GridSampler(self.space, seed=0),
            pruner=optuna.pruners.SuccessiveHalvingPruner() if prune else optuna.pruners.NopPruner())
        self.settings, self.n = settings, fid_n(self.galaxies, settings["fid_samples"])
        self.where = shown(storage) or self.out / JOURNAL

    def scorer(self):
        if self.score_fid is None:  # loaded at the first training: a worker with nothing to do never pays
            self.score_fid = fid_scorer(self.galaxies, self.n, self.settings["seed"],
                                        pick_device(self.settings["device"]))
        return self.score_fid

    def run_trial(self, trial):
        """Optuna's objective: train and measure the trial's configuration, unless another trial holds it."""
        config = {name: trial.suggest_categorical(name, values) for name, values in self.space.items()}
        owner = holder(self.study.get_trials(deepcopy=False), config, len(self.configs))
        if owner != trial.number:
            trial.set_user_attr("surplus", f"trial {owner} holds this configuration")
            raise optuna.TrialPruned()  # trains nothing; PRUNED, not FAIL, as it is nothing to retry
        cid, start = config_id(config), time.time()
        for key, value in {"id": cid, "worker": WORKER, "interrupted": False}.items():  # not the failed attempt's
            trial.set_user_attr(key, value)
        shared = {k: self.settings[k] for k in ("data", "max_per_class", "epochs", "warmup_epochs", "seed", "device")}
        train_config = TrainConfig(**config, **shared, out=str(self.out / "runs" / cid))

        def on_epoch(epoch, record):
            # Writing to the trial also proves it is still ours: one taken for dead and taken over by
            # another worker raises UpdateFinishedTrialError here, which stops this training.
            trial.set_user_attr("epoch", epoch)
            if record["beta"] == train_config.beta:  # after warm-up: the loss the score uses
                trial.report(record["val_loss"], epoch)
                if trial.should_prune():
                    pruned = {"status": "pruned", "val_loss": record["val_loss"], "fid_n": self.n,
                              "seconds": round(time.time() - start, 1)}
                    for key, value in pruned.items():
                        trial.set_user_attr(key, value)
                    write_run_record(train_config.out, self.grid, results(config, pruned))
                    raise optuna.TrialPruned(f"validation loss {record['val_loss']:.1f} behind at epoch {epoch}")

        try:
            metrics, resumed = run_config(train_config, self.out, self.galaxies, self.scorer(), on_epoch)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)  # Ctrl-C is no death of the configuration's: retried, uncounted
            raise
        attrs = {**metrics, "fid_n": self.n, "seconds": round(time.time() - start, 1), "resumed": resumed}
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        write_run_record(train_config.out, self.grid, results(config, attrs))
        return score_of(metrics, self.loss_weight)  # inf for a failed one: recorded once, ranked last

    def work(self, position=0):
        """Pull configurations until every one is finished; the study is then complete."""
        total = len(self.configs)
        finished, running, _ = tally(self.study.get_trials(deepcopy=False))
        print(f"grid {self.grid}: {total} configurations, {len(finished)} finished, {len(running)} in progress; "
              f"study {self.study.study_name} in {self.where}")
        bar = tqdm(total=total, initial=len(finished), desc="configurations", unit="config", position=position,
                   disable=not self.progress)

        def report(study, trial):  # Optuna's callback, after each trial
            finished, _, _ = tally(study.get_trials(deepcopy=False))
            bar.n = len(finished)
            bar.refresh()
            a = trial.user_attrs
            if "surplus" in a or trial_config(trial) is None:
                return
            summary = {"ok": lambda: f"val loss {a['val_loss']:.1f}  FID {a['fid']:.2f} (N={self.n})  "
                                     f"score {trial.value:.2f}",
                       "failed": lambda: f"FAILED ({a.get('error')})",
                       "pruned": lambda: f"pruned at epoch {a.get('epoch')}"}[a.get("status", "pruned")]()
            tqdm.write(f"[{len(finished)}/{total}] {config_id(trial_config(trial))}: {summary}  "
                       f"({a.get('seconds', 0):.0f} s" + (", resumed from its last.pt)" if a.get("resumed") else ")"))

        try:
            while True:
                trials = self.study.get_trials(deepcopy=False)
                finished, running, to_retry = tally(trials)
                bar.n = len(finished)
                bar.refresh()
                if len(finished) == total:
                    break
                if len(trials) < total or any(t.state == TrialState.WAITING for t in trials):
                    try:  # one trial: Optuna fails stale trials, asks, beats while it trains, tells
                        self.study.optimize(self.run_trial, n_trials=1, callbacks=[report])
                    except Exception as e:
                        if not taken_over(e):
                            raise
                        tqdm.write("this worker was taken for dead and its configuration taken over; going on")
                    continue
                if requeue(self.study, trials, self.configs, finished, running, to_retry):
                    continue
                bar.set_postfix_str(f"waiting for {len(running)} in progress elsewhere")
                time.sleep(min(5, self.heartbeat))
                fail_stale_trials(self.study)
        except KeyboardInterrupt:
            raise SystemExit("grid_search.py: interrupted; the configuration in progress resumes from its last.pt "
                             "in the next worker (run the same command again)") from None
        finally:
            bar.close()
        return self.study


def taken_over(error):
    """Whether an error of Study.optimize says that another worker failed this one's trial meanwhile (taken
    for dead: a machine that stalled past the grace period): a write to the trial raises
    UpdateFinishedTrialError; Optuna 5.1's tell of it raises "Cannot tell a FAIL trial." (a ValueError), which
    its own clean-up then replaces with an AssertionError ("Should not reach.")."""
    return any(isinstance(e, UpdateFinishedTrialError) or (isinstance(e, ValueError) and str(e).startswith(
        "Cannot tell a ")) for e in (error, error.__context__))


def start_worker(kwargs, threads, position):
    """A worker process of --workers-per-device."""
    import torch
    if threads:
        torch.set_num_threads(threads)  # N trainings on the CPU share its cores instead of each taking all
    exit_on_input_error(lambda: Worker(**kwargs).work(position))()


def run_grid(axes, settings, out, storage=None, workers=1, loss_weight=LOSS_WEIGHT, score_fid=None, progress=True,
             prune=False, heartbeat=HEARTBEAT):
    """Be `workers` workers of the grid's study (processes on this device, beside any others), then rank
    everything in `out`. `settings`: data, max_per_class, epochs, warmup_epochs, seed, device, fid_samples.
    `score_fid`: model -> FID; None uses fid.py (tests pass a cheap stand-in)."""
    kwargs = {"axes": axes, "settings": settings, "out": out, "storage": storage, "loss_weight": loss_weight,
              "score_fid": score_fid, "progress": progress, "prune": prune, "heartbeat": heartbeat}
    worker = Worker(**kwargs)  # here too with several: bad input is one line before any process starts
    if workers == 1:
        worker.work()
    else:
        cpu = pick_device(settings["device"]).type == "cpu"
        threads = max(1, (os.cpu_count() or 1) // workers) if cpu else None
        spawn = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        processes = [spawn.Process(target=start_worker, args=(kwargs, threads, i)) for i in range(workers)]
        for process in processes:
            process.start()
        try:
            for process in processes:
                process.join()
        except KeyboardInterrupt:
            for process in processes:
                process.join()
            raise SystemExit("grid_search.py: interrupted; run the same command again to go on") from None
        failed = [p.exitcode for p in processes if p.exitcode != 0]
        if failed:
            raise SystemExit(f"grid_search.py: {len(failed)} of {workers} workers stopped (exit codes "
                             f"{', '.join(map(str, failed))}); run the same command again to go on")
    return summarize(out, loss_weight, storage)


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
                   f"{LOSS_WEIGHT:g}: 0.01 of SSIM is worth 18 FID points; docs/seed-findings.md)")
    p.add_argument("--out", default=str(RUNS_DIR / "grid"), help="run folders, study record and results "
                   "(default runs/grid); workers on several machines need it on a shared filesystem")
    p.add_argument("--storage", metavar="FILE|URL", help=f"where the study is kept (default OUT/{JOURNAL}): a "
                   "journal file, or a database URL such as postgresql://user:password@host/db for many machines")
    p.add_argument("--workers-per-device", type=int, default=1, metavar="N", help="N workers (processes) of the "
                   "study at once on this device, e.g. to pack small trainings onto one GPU")
    p.add_argument("--prune", action="store_true", help="stop configurations whose validation loss lags behind at "
                   "successive-halving rungs (off: every configuration runs all its epochs)")
    p.add_argument("--summarize", metavar="DIR", help="only rank what the study of DIR holds (with --storage if "
                   "its workers used one)")
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
    if args.workers_per_device < 1:
        raise InputError(f"--workers-per-device {args.workers_per_device}: must be at least 1")
    pick_device(args.device)


@exit_on_input_error
def main(argv=None):
    args = parse_args(argv)
    if args.summarize:
        if not Path(args.summarize).is_dir():
            raise InputError(f"{args.summarize}: no such folder")
        summarize(args.summarize, args.loss_weight, args.storage)
        return
    check_settings(args)
    axes = DEFAULT_GRID | (read_grid_file(args.grid) if args.grid else {})
    axes |= {name: getattr(args, name) for name in AXES if getattr(args, name) is not None}
    settings = {k: getattr(args, k) for k in ("data", "max_per_class", "epochs", "warmup_epochs", "seed",
                                              "device", "fid_samples")}
    run_grid(validate_axes(axes), settings, args.out, args.storage, args.workers_per_device, args.loss_weight,
             prune=args.prune)


if __name__ == "__main__":
    main()
