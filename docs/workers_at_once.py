"""N workers of one grid started in the same second on a fresh storage, as a SLURM array starts them:
`python docs/workers_at_once.py --workers 8 --out DIR [--storage URL]` (DIR must not exist; without
--storage the study is the journal file DIR/optuna-journal.log).

Each worker is the real command line (`grid_search.py`, real Inception FID) on a tiny grid of 8
configurations (1 epoch, 20 embedded galaxies a class). Prints one JSON line: how far apart the workers
started, how many ended with exit code 0 and no traceback (alive to the end), how many configurations
each finished trial holds (1 each: none run twice) and how many were trained (the "[k/8] id:" lines of all
workers together), and the wall time."""
import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import optuna  # noqa: E402
from study_storage import open_storage  # noqa: E402

FLAGS = ["--data", "embedded", "--max-per-class", "20", "--epochs", "1", "--warmup-epochs", "0", "--batch-size",
         "16", "--base-channels", "4", "--latent", "4", "--layers", "2", "--lr", "1e-3", "2e-3", "4e-3", "8e-4",
         "--beta", "0.5", "1", "--fid-samples", "6", "--device", "cpu"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--storage")
    args = p.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out}: exists; give a new folder (a fresh storage)")
    command = [sys.executable, str(ROOT / "grid_search.py"), *FLAGS, "--out", str(args.out),
               *(["--storage", args.storage] if args.storage else [])]
    started, workers = [], []
    for _ in range(args.workers):
        started.append(time.time())
        workers.append(subprocess.Popen(command, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = [worker.communicate()[0] for worker in workers]
    wall = time.time() - started[0]
    alive = sum(worker.returncode == 0 and "Traceback" not in output for worker, output in zip(workers, outputs))
    record = json.loads((args.out / "study.json").read_text())  # the grid's study, as grid_search.py keeps it
    study = optuna.load_study(study_name=record["study"], storage=open_storage(args.storage, args.out))
    holders = Counter(t.user_attrs.get("id") for t in study.get_trials(deepcopy=False)  # the trials that trained
                      if t.state == optuna.trial.TrialState.COMPLETE and "surplus" not in t.user_attrs)
    trained = Counter(line.split()[1].rstrip(":") for output in outputs for line in output.splitlines()
                      if line.startswith("[") and "/" in line.split()[0] and " val loss " in line)
    print(json.dumps({"workers": args.workers, "started_within_s": round(started[-1] - started[0], 3),
                      "alive_to_the_end": alive, "exit_codes": [worker.returncode for worker in workers],
                      "configurations": record["n_configs"], "finished": len(holders),
                      "finished_once": sum(n == 1 for n in holders.values()),
                      "trained_once": sum(n == 1 for n in trained.values()), "trained_twice_or_more": sum(
                          n > 1 for n in trained.values()), "wall_s": round(wall, 1)}))
    if alive < args.workers:
        for worker, output in zip(workers, outputs):
            if worker.returncode != 0 or "Traceback" in output:
                print(output[-2000:], file=sys.stderr)


if __name__ == "__main__":
    main()
