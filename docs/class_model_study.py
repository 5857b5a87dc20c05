"""Which class model can tell a model's latents apart (docs/seed-findings.md, section 5):
`python docs/class_model_study.py CHECKPOINT [CHECKPOINT ...]`.

The class samplers keep a draw of class k where a class model of the training latents gives it k with
p >= --class-confidence (samplers.Sampler.keep_confident): a logistic regression when this study ran, the
regularised MLP it chose since (samplers.latent_class_model). Here several class models are fitted to the same
training latents (the encoder's means) and scored on the validation galaxies' latents: log-loss and accuracy
(how good a class model is), the share of each class's real galaxies it is sure of at p >= 0.95 (what a
sampler that draws like the real latents can keep), how often those sure calls are right, and the share of
1,024 gmm draws a class (samplers.fit_sampler, every draw kept) it is sure of: what --class would keep with it."""
import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from checkpoint import load_checkpoint  # noqa: E402
from data import checkpoint_galaxies  # noqa: E402
from model import encode_means  # noqa: E402
from samplers import CLASS_CONFIDENCE, fit_sampler, latent_class_model  # noqa: E402


class MixtureBayes:
    """The Bayes rule of one Gaussian mixture per class (what the gmm sampler fits) and the class shares."""

    def fit(self, z, y):
        self.classes_ = np.unique(y)
        self.mixtures = [GaussianMixture(4, covariance_type="full", reg_covar=1e-3, random_state=0).fit(z[y == k])
                         for k in self.classes_]
        self.log_prior = np.log([np.mean(y == k) for k in self.classes_])
        return self

    def predict_proba(self, z):
        log_p = np.stack([m.score_samples(z) for m in self.mixtures], 1) + self.log_prior
        p = np.exp(log_p - log_p.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)


CLASS_MODELS = {
    "logistic regression": lambda: LogisticRegression(max_iter=1000),  # the class samplers' until this study
    "quadratic discriminant": lambda: QuadraticDiscriminantAnalysis(reg_param=0.1),
    "mixtures' Bayes rule": MixtureBayes,
    "15 nearest neighbours": lambda: KNeighborsClassifier(15),
    "MLP": lambda: MLPClassifier((64,), max_iter=500, random_state=0),
    "MLP, alpha 1": latent_class_model,  # the class samplers' own since
}


def draws_sure(classifier, draws, confidence=CLASS_CONFIDENCE):
    """{class: the share of that class's draws the classifier gives it with p >= confidence}."""
    columns = list(classifier.classes_)
    return {k: float(np.mean(classifier.predict_proba(z)[:, columns.index(k)] >= confidence)) for k, z in draws.items()}


def score(classifier, z, y, confidence=CLASS_CONFIDENCE):
    p = classifier.predict_proba(z)
    columns = list(classifier.classes_)
    truth = np.array([columns.index(k) for k in y])
    sure = p.max(1) >= confidence
    return {"log_loss": float(-np.mean(np.log(np.clip(p[np.arange(len(y)), truth], 1e-12, 1)))),
            "accuracy": float(np.mean(p.argmax(1) == truth)),
            "sure": {int(k): float(np.mean(p[y == k, i] >= confidence)) for i, k in enumerate(columns)},
            "right_when_sure": float(np.mean(p.argmax(1)[sure] == truth[sure])) if sure.any() else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    for path in args.checkpoints:
        model, saved = load_checkpoint(path, "cpu")
        galaxies = checkpoint_galaxies(saved, progress=False)
        train_z = encode_means(model, galaxies.train_x).double().numpy()
        val_z, val_y = encode_means(model, galaxies.val_x).double().numpy(), galaxies.val_y.numpy()
        print(f"{path}: {len(train_z)} training latents, {len(val_z)} validation latents")
        mixture = fit_sampler("gmm", train_z, galaxies.train_y, seed=0, confidence=0)
        draws = {k: np.asarray(mixture.sample(1024, 0, label=k), np.float64) for k in galaxies.classes}
        for name, make in CLASS_MODELS.items():
            classifier = make().fit(train_z, galaxies.train_y.numpy())
            s, drawn = score(classifier, val_z, val_y), draws_sure(classifier, draws)
            right = "-" if s["right_when_sure"] is None else f"{s['right_when_sure']:.2f}"
            print(f"  {name:<24} log-loss {s['log_loss']:.2f}  accuracy {s['accuracy']:.2f}  sure at "
                  f"p >= {CLASS_CONFIDENCE:g}: {', '.join(f'{v:.2f}' for v in s['sure'].values())}  right when sure "
                  f"{right}  gmm draws sure: {', '.join(f'{v:.2f}' for v in drawn.values())}", flush=True)


if __name__ == "__main__":
    main()
