"""The training step on a GPU as one CUDA graph: forward, SSIM + beta KLD, backward and Adam (with a
discriminator, its term, its step and its Adam too), recorded once and replayed for every full batch.

Why: at batch 64 the default model's step is a few hundred small kernels, and a GPU spends its time
launching them, not computing (~4.7 ms a step on an H200, about 1% of the chip: docs/performance.md).
Replaying a captured graph launches them all at once. What capture needs, and has here: fixed shapes (an
epoch's last, shorter batch runs eagerly), no host sync inside the step (run_epoch reads its sums once an
epoch; the discriminator's turns and mirrors are drawn on the device), Adam keeping its step count on the
device (capturable=True), and beta as a tensor the graph reads.

Not graphed: bf16 autocast (eager, as on a CPU). GALAXY_VAE_CUDA_GRAPH=0 in the environment trains eagerly
everywhere (to compare, or to debug).
"""
import os

import torch

from losses import train_step

WARMUP_STEPS = 3  # eager steps before capture: cuDNN picks its algorithms, autograd and Adam build their state


def graphs_wanted(config, device):
    """Will train.py capture the step: a CUDA device, fp32, no class input, not switched off."""
    return (torch.device(device).type == "cuda" and config.precision == "fp32"
            and not getattr(config, "class_input", ())  # a study's model (docs/class_input_study.py): eager
            and os.environ.get("GALAXY_VAE_CUDA_GRAPH", "1") != "0")


def adam(params, lr, capturable=False):
    """The VAE's Adam; capturable keeps its step count on the device, which a CUDA graph needs."""
    return torch.optim.Adam(params, lr=lr, capturable=capturable)


def load_adam_state(optimizer, state):
    """Load a saved Adam state (saved on any device, capturable or not) into `optimizer`, keeping this
    optimizer's own capturable setting and putting the step counts where that setting needs them."""
    capturable = [group["capturable"] for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flag in zip(optimizer.param_groups, capturable):
        group["capturable"] = flag
        for param in group["params"]:
            param_state = optimizer.state.get(param, {})
            if "step" in param_state:
                param_state["step"] = param_state["step"].to(device=param.device if flag else "cpu",
                                                             dtype=torch.float32)


def detached(losses):
    """A step's loss dict without its autograd graph: a graph kept alive by the returned losses would keep
    autograd's gradient-accumulation nodes, and with them the stream they were made on, into the next step."""
    return {key: value.detach() if isinstance(value, torch.Tensor) else value for key, value in losses.items()}


class GraphedTrainStep:
    """A callable (batch, beta) -> loss dict, as losses.eager_step, that after WARMUP_STEPS eager steps
    captures the step of a full batch and from then on replays it: one graph without the adversary (the
    warm-up epochs) and one with it. One per run: it lives across epochs (beta is copied into the graph at
    each call). The loss dict it returns is the graph's own output, overwritten by the next replay: read it
    (run_epoch adds it to its sums) before the next call."""

    def __init__(self, model, optimizer, config, adversary=None):
        optimizers = [optimizer] + ([adversary["optimizer"]] if adversary is not None else [])
        if not all(group["capturable"] for opt in optimizers for group in opt.param_groups):
            raise ValueError("a CUDA graph needs Adam(capturable=True): build it with graphed_step.adam")
        self.model, self.optimizer, self.config = model, optimizer, config
        self.graphs, self.warmed = {}, {}  # by "is the adversary on"
        self.side = torch.cuda.Stream(next(model.parameters()).device)  # warm-up off the default stream, as
                                                                         # capture requires: one for all of them

    def eager(self, x, beta, adversary):
        # Once a graph is captured it owns the gradient buffers: zero them in place rather than drop them.
        return detached(train_step(self.model, x, self.optimizer, beta, self.config.recon_weight,
                                   self.config.l1_weight, adversary=adversary, set_to_none=not self.graphs,
                                   recon_loss=self.config.recon_loss))

    def __call__(self, x, beta, adversary=None):
        if len(x) != self.config.batch_size:
            return self.eager(x, beta, adversary)
        key = adversary is not None
        if key not in self.graphs and self.warmed.get(key, 0) < WARMUP_STEPS:
            self.warmed[key] = self.warmed.get(key, 0) + 1
            self.side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(self.side):
                losses = self.eager(x, beta, adversary)
            torch.cuda.current_stream(x.device).wait_stream(self.side)
            return losses
        if key not in self.graphs:
            self.graphs[key] = self.capture(x, adversary)
        graph, static_x, static_beta, static_losses = self.graphs[key]
        static_x.copy_(x)
        static_beta.fill_(beta)
        graph.replay()
        return static_losses

    def capture(self, x, adversary):
        static_x, static_beta = x.clone(), torch.zeros((), device=x.device)
        set_to_none = not self.graphs  # the first graph allocates the gradients; a second one reuses them
        if set_to_none:
            self.optimizer.zero_grad(set_to_none=True)
            if adversary is not None:
                adversary["optimizer"].zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_losses = detached(train_step(self.model, static_x, self.optimizer, static_beta,
                                                self.config.recon_weight, self.config.l1_weight, adversary=adversary,
                                                set_to_none=set_to_none, recon_loss=self.config.recon_loss))
        return graph, static_x, static_beta, static_losses
