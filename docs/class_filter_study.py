"""Which filter of a class's draws keeps both the class and its morphology, on the validation split:
`python docs/class_filter_study.py EVAL_DIR [EVAL_DIR ...] [--draw-seeds 0,1] [--bins 10] [--ways W,...]`.

EVAL_DIR holds a `generate.py --evaluate --split val` evaluation_val.json: its checkpoint, sky noise and
decode-encode steps are used as chosen there. The mixture is fitted once, as generate.py fits it; its draws of a
class are kept four ways:
- "p>=C": those the class model gives to the class with probability >= C (samplers.CLASS_CONFIDENCE; as drawn);
- "p>=C refined": the same judged after the recorded decode-encode round trips (at least one), on the encoder's
  mean of the image the draw decodes to, rather than on the draw itself;
- "every draw": none dropped (--class-confidence 0);
- "matched": kept so that the class model's scores of the kept draws follow its scores of real galaxies of the
  class it was not fitted to (5-fold cross-validation on the training latents, scored on one posterior draw
  z = mu + sigma * eps a galaxy, as the mixture's draws are draws of posteriors): the real scores' --bins
  quantiles cut [0, 1] into bins, and each bin takes its share of the n kept draws in the order drawn. The p>=C
  filter keeps only the draws the class model is surest of, and class samples lost the real galaxies' spread of
  colour and profile with it (docs/results.md); this keeps the class's unsure galaxies in their real share
  (real galaxies scored on their means instead had the same quartiles, measured once on seed 0).
Per way and draw seed: the real-galaxy judge's accuracy on 126 class samples a class over its accuracy on the
real validation galaxies ("ratio", the rule that chose C), the FID of 42 a class against the real validation
galaxies (N = 126), statmorph's W1 ÷ floor of the same 42 a class (as --evaluate measures them), the share of
draws kept, and the quartiles of the kept draws' class-model scores beside the real galaxies'. One JSON line per
EVAL_DIR and draw seed, then the mean tables."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fid  # noqa: E402
from devices import forked_rng  # noqa: E402
from evaluation import judge_accuracy, morphology_report, real_activations  # noqa: E402
from judge import classify, load_or_train_classifier  # noqa: E402
from model import decode_latents, encode_posteriors, refine_latents, standard_normal_latents  # noqa: E402
from morphology_stages_study import print_mean_table, ratios, validation_sets  # noqa: E402 (beside this script)
from samplers import CLASS_CONFIDENCE, KEEP_ROUNDS, fit_latent_class_model, fit_sampler, one_blas_thread  # noqa: E402


def held_out_scores(mu, sigma, labels, seed, folds=5):
    """Each training galaxy's class-model probabilities (n x classes) from a class model fitted to the other
    folds' means, scored on one posterior draw of the galaxy."""
    from sklearn.model_selection import StratifiedKFold
    z = (mu + sigma * standard_normal_latents(len(mu), mu.shape[1], seed + 5)).double().numpy()
    means, scores = mu.double().numpy(), np.zeros((len(mu), len(np.unique(labels))))
    with one_blas_thread():
        for fit_rows, score_rows in StratifiedKFold(folds, shuffle=True, random_state=seed).split(means, labels):
            scores[score_rows] = fit_latent_class_model(means[fit_rows], labels[fit_rows]).predict_proba(z[score_rows])
    return scores


def matched_sample(sampler, n, seed, label, reference, bins):
    """n draws of class `label` whose class-model scores fill the quantile bins of `reference` (the real
    galaxies' scores) in the reference's shares; (latents in a seeded random order, share of draws kept)."""
    column = list(sampler.latent_classifier.classes_).index(int(label))
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    share = np.histogram(reference, edges)[0] / len(reference)
    quota = np.floor(share * n).astype(int)
    quota[np.argsort(-(share * n - quota), kind="stable")[: n - quota.sum()]] += 1  # largest remainders
    taken, drawn = [[] for _ in quota], 0
    for attempt in range(4 * KEEP_ROUNDS):
        z = sampler._sample(4 * n + 64, seed + 10_007 * attempt, label)
        drawn += len(z)
        p = sampler.latent_classifier.predict_proba(z.double().numpy())[:, column]
        for row, b in enumerate(np.searchsorted(edges, p, side="right") - 1):
            if len(taken[b]) < quota[b]:
                taken[b].append(z[row])
        if all(len(t) == q for t, q in zip(taken, quota)):
            break
    else:
        print(f"class {label}: bins short by {[int(q - len(t)) for t, q in zip(taken, quota)]}", file=sys.stderr)
    z = torch.stack([row for t in taken for row in t])
    return z[torch.randperm(len(z), generator=torch.Generator().manual_seed(seed))], len(z) / drawn


def refined_sure(sampler, model, n, seed, label, steps, confidence=CLASS_CONFIDENCE):
    """n draws of class `label` kept by the class model's probability of their latents after `steps` (at least
    one) decode-encode round trips, where the decoded image lands, rather than as drawn; (the refined latents,
    share kept)."""
    column = list(sampler.latent_classifier.classes_).index(int(label))
    kept, drawn = [], 0
    for attempt in range(KEEP_ROUNDS):
        with forked_rng(torch.device("cpu"), seed + attempt):
            z = refine_latents(model, sampler._sample(4 * n + 64, seed + 10_007 * attempt, label), max(steps, 1))
        drawn += len(z)
        kept.append(z[sampler.latent_classifier.predict_proba(z.double().numpy())[:, column] >= confidence])
        if sum(map(len, kept)) >= n:
            break
    z = torch.cat(kept)
    return z[:n], len(z) / drawn


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("evaluations", nargs="+", help="folders with generate.py --evaluate --split val's evaluation_val.json")
    p.add_argument("--draw-seeds", type=lambda t: [int(v) for v in t.split(",")], default=[0, 1])
    p.add_argument("--bins", type=int, default=10)
    p.add_argument("--samples", type=int, default=126, help="class samples a class for the judge")
    p.add_argument("--ways", type=lambda t: t.split(","), help="the ways to run (default: all)")
    args = p.parse_args()
    inception, lines = fid.load_inception(device="cpu"), []
    for folder in map(Path, args.evaluations):
        chosen, model, galaxies, counts, held, recon = validation_sets(folder)
        steps, classes = chosen["samplers"]["refine_steps"], list(galaxies.classes)
        mu, sigma = encode_posteriors(model, galaxies.train_x)
        labels = galaxies.train_y.numpy()
        sure = fit_sampler("gmm", mu, labels, chosen["seed"], confidence=CLASS_CONFIDENCE, spreads=sigma)
        columns = list(sure.latent_classifier.classes_)
        scores = held_out_scores(mu, sigma, labels, chosen["seed"])
        reference = {k: scores[labels == k, columns.index(k)] for k in classes}
        judge = load_or_train_classifier(galaxies, 30, 0, "cpu", progress=False)
        val_x, val_y = galaxies.split("val")
        real_accuracy = judge_accuracy(judge, val_x, val_y, classes)
        real = np.concatenate([real_activations(galaxies, "val", k, n, chosen["seed"], inception, "cpu", False)
                               for k, n in counts.items()])
        for draw_seed in args.draw_seeds:
            ways = {f"p>={CLASS_CONFIDENCE:g}": lambda k: (sure.sample(args.samples, draw_seed, label=k), sure.kept[k]),
                    f"p>={CLASS_CONFIDENCE:g} refined": lambda k: refined_sure(sure, model, args.samples, draw_seed, k,
                                                                               steps),
                    "every draw": lambda k: (sure._sample(args.samples, draw_seed, k), 1.0),  # its mixture, unfiltered
                    "matched": lambda k: matched_sample(sure, args.samples, draw_seed, k, reference[k], args.bins)}
            ways = {name: way for name, way in ways.items() if not args.ways or name in args.ways}
            images, kept, quartiles, result = {}, {}, {}, {}
            for name, draw in ways.items():
                images[name] = {}
                for k in classes:
                    z, kept[(name, k)] = draw(k)
                    p_k = sure.latent_classifier.predict_proba(z.double().numpy())[:, columns.index(k)]
                    quartiles[(name, k)] = np.quantile(p_k, [0.25, 0.5, 0.75]).round(3).tolist()
                    with forked_rng(torch.device("cpu"), draw_seed):
                        images[name][k] = decode_latents(model, z if "refined" in name else refine_latents(model, z, steps))
                acts = np.concatenate([fid.get_activations(images[name][k][:n], inception, None, "cpu", False)
                                       for k, n in counts.items()])
                result[name] = {
                    "fid": round(fid.feature_distance(acts, real), 1),
                    "judge_ratio": {k: round((classify(judge, images[name][k], classes) == k).float().mean().item()
                                             / real_accuracy[str(k)], 3) for k in classes},
                    "kept": {k: round(kept[(name, k)], 3) for k in classes},
                    "score_quartiles": {k: quartiles[(name, k)] for k in classes}}
            report = morphology_report(galaxies, held, recon,
                                       {name: {k: images[name][k][:counts[k]] for k in classes} for name in ways},
                                       counts, chosen["seed"], progress=False)
            line = {"evaluation": str(folder), "draw_seed": draw_seed, "bins": args.bins,
                    "real_score_quartiles": {k: np.quantile(reference[k], [0.25, 0.5, 0.75]).round(3).tolist()
                                             for k in classes},
                    "ways": result, "failures": report["failures"]} | ratios(report["samplers"])
            print(json.dumps(line), flush=True)
            lines.append(line)
    print_mean_table(lines)
    names = list(lines[0]["ways"])
    print("\n| way | FID | judge ratio (min over lines) | kept |")
    print("| --- | --- | --- | --- |")
    for name in names:
        ways = [line["ways"][name] for line in lines]
        print(f"| {name} | {np.mean([w['fid'] for w in ways]):.1f} | "
              + " / ".join(f"{np.mean([w['judge_ratio'][k] for w in ways]):.2f} ({min(w['judge_ratio'][k] for w in ways):.2f})"
                           for k in ways[0]["judge_ratio"]) + " | "
              + " / ".join(f"{np.mean([w['kept'][k] for w in ways]):.0%}" for k in ways[0]["kept"]) + " |")


if __name__ == "__main__":
    main()
