"""PyTorch twin of imgsearch's default DIM model, for the speed benchmark.

Usage: python3 bench/torch_reference.py EXPORT.safetensors [STEPS] [default|paper]

EXPORT is written by `cargo run --release --example train_bench -- --torch`: the candle model's
parameters, a batch of real images (NHWC, normalised), the reparameterisation noise, the
negative-pair permutation and the loss terms candle computed. This script rebuilds the same
network from those weights, checks that it computes the same losses, then times the training
step (forward, backward, Adam) at batch 64 and 128 and embedding at batch 256 on 2 threads.
It prints one JSON object.

Recipes: `default` is what `imgsearch train` runs (encode-and-dot critics scoring every code
against every image of the batch, InfoNCE, two views per image: rows v*B + i); `paper` is the
DIM paper's concat critics with JSD on one view and a shuffled negative per image.
"""
import json
import resource
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

torch.set_num_threads(2)


def conv_weight(w, cin):
    """(C_out, K*K*C_in) in (ky, kx, c) order -> (C_out, C_in, K, K)."""
    cout, fan = w.shape
    k = int(round((fan // cin) ** 0.5))
    return w.reshape(cout, k, k, cin).permute(0, 3, 1, 2).contiguous()


class Dim(torch.nn.Module):
    def __init__(self, t, recipe, channels=(64, 128, 256)):
        super().__init__()
        p = torch.nn.Parameter
        self.downs = torch.nn.ParameterList()
        self.down_bias = torch.nn.ParameterList()
        cin = 3
        for i, c in enumerate(channels):
            self.downs.append(p(conv_weight(t[f"param.encoder.down{i}.weight"], cin)))
            self.down_bias.append(p(t[f"param.encoder.down{i}.bias"].clone()))
            cin = c
        g = lambda name: p(t[f"param.{name}"].clone())
        self.refine_w = p(conv_weight(t["param.encoder.refine.weight"], cin))
        self.refine_b = g("encoder.refine.bias")
        self.hidden_w, self.hidden_b = g("encoder.hidden.weight"), g("encoder.hidden.bias")
        self.mean_w, self.mean_b = g("encoder.mean.weight"), g("encoder.mean.bias")
        self.logvar_w, self.logvar_b = g("encoder.logvar.weight"), g("encoder.logvar.bias")
        self.summary_w = p(conv_weight(t["param.global.summary.weight"], cin))
        self.summary_b = g("global.summary.bias")
        self.recipe = recipe
        if recipe == "paper":
            self.g = [(g(f"global.l{i}.weight"), g(f"global.l{i}.bias")) for i in range(3)]
            for i, (w, b) in enumerate(self.g):
                self.register_parameter(f"g{i}w", w)
                self.register_parameter(f"g{i}b", b)
            self.fin_w, self.fin_b = g("local.feature_in.weight"), g("local.feature_in.bias")
            self.code_w = g("local.code_in.weight")
            self.lh_w, self.lh_b = g("local.hidden.weight"), g("local.hidden.bias")
            self.out_w, self.out_b = g("local.out.weight"), g("local.out.bias")
        else:
            # Encode-and-dot critics: a two-layer MLP per side, output L2-normalised.
            self.embedders = {}
            for critic in ("global", "local"):
                for side in ("features", "code"):
                    layers = []
                    for i in range(2):
                        w, b = g(f"{critic}.{side}.{i}.weight"), g(f"{critic}.{side}.{i}.bias")
                        self.register_parameter(f"{critic}_{side}_{i}_w", w)
                        self.register_parameter(f"{critic}_{side}_{i}_b", b)
                        layers.append((w, b))
                    self.embedders[(critic, side)] = layers

    def encode(self, x_nhwc):
        h = x_nhwc.permute(0, 3, 1, 2)
        for w, b in zip(self.downs, self.down_bias):
            h = F.leaky_relu(F.conv2d(h, w, b, stride=2, padding=1), 0.2)
        local = h
        r = F.leaky_relu(F.conv2d(local, self.refine_w, self.refine_b, padding=1), 0.2)
        pooled = r.mean(dim=(2, 3))
        hidden = F.leaky_relu(F.linear(pooled, self.hidden_w, self.hidden_b), 0.2)
        return local, F.linear(hidden, self.mean_w, self.mean_b), F.linear(hidden, self.logvar_w, self.logvar_b)

    def losses(self, x, eps, perm):
        if self.recipe == "paper":
            return self.paper_losses(x, eps, perm)
        return self.default_losses(x, eps, perm.shape[0])

    def embed_rows(self, critic, side, x):
        (w0, b0), (w1, b1) = self.embedders[(critic, side)]
        h = F.linear(F.leaky_relu(F.linear(x, w0, b0), 0.2), w1, b1)
        return h / h.norm(dim=-1, keepdim=True).clamp_min(1e-6)

    def default_losses(self, x, eps, images, temperature=0.1):
        local, mean, logvar = self.encode(x)
        z = mean + torch.exp(0.5 * logvar.clamp(-10, 10)) * eps
        rows = z.shape[0]
        views = rows // images
        r = torch.arange(rows)
        other = ((r // images + 1) % views) * images + r % images
        same_image = (r.unsqueeze(1) % images) == (r.unsqueeze(0) % images)
        positive = torch.zeros(rows, rows, 1)
        positive[r, other] = 1.0
        allowed = (positive[..., 0] > 0) | ~same_image

        def infonce(critic, features):
            q, p, f = features.shape
            fe = self.embed_rows(critic, "features", features.reshape(q * p, f))
            ce = self.embed_rows(critic, "code", z)
            scores = (ce @ fe.t() / temperature).reshape(rows, q, p)
            masked = scores.masked_fill(~allowed.unsqueeze(-1), float("-inf"))
            pos = (scores * positive).sum(1)
            return (torch.logsumexp(masked, 1) - pos).mean()

        s = F.conv2d(local, self.summary_w, self.summary_b).permute(0, 2, 3, 1).flatten(1)
        b, c, m, _ = local.shape
        g_loss = infonce("global", s.unsqueeze(1))
        l_loss = infonce("local", local.permute(0, 2, 3, 1).reshape(b, m * m, c))
        prior = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum() / rows
        return g_loss, l_loss, prior

    def paper_losses(self, x, eps, perm):
        local, mean, logvar = self.encode(x)
        z = mean + torch.exp(0.5 * logvar) * eps
        s = F.conv2d(local, self.summary_w, self.summary_b).permute(0, 2, 3, 1).flatten(1)

        def glob(summary):
            h = torch.cat([summary, z], 1)
            h = F.leaky_relu(F.linear(h, *self.g[0]), 0.2)
            h = F.leaky_relu(F.linear(h, *self.g[1]), 0.2)
            return F.linear(h, *self.g[2]).squeeze(-1)

        b, c, m, _ = local.shape
        rows = local.permute(0, 2, 3, 1).reshape(b, m * m, c)
        proj = F.linear(rows, self.fin_w, self.fin_b)
        code = F.linear(z, self.code_w).unsqueeze(1)

        def loc(p):
            h = F.leaky_relu(p + code, 0.2)
            h = F.leaky_relu(F.linear(h, self.lh_w, self.lh_b), 0.2)
            return F.linear(h, self.out_w, self.out_b).squeeze(-1)

        jsd = lambda pos, neg: F.softplus(-pos).mean() + F.softplus(neg).mean()
        g_loss = jsd(glob(s), glob(s[perm]))
        l_loss = jsd(loc(proj), loc(proj[perm]))
        prior = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum() / b
        return g_loss, l_loss, prior


def main():
    t = load_file(sys.argv[1])
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    recipe = sys.argv[3] if len(sys.argv) > 3 else "default"
    views = 2 if recipe == "default" else 1
    model = Dim(t, recipe)
    x, eps, perm = t["input"], t["eps"], t["perm"].long()
    g, l, p = model.losses(x[: eps.shape[0]], eps, perm)
    got = torch.stack([g, l, p]).detach()
    want = t["losses"]
    err = (got - want).abs().max().item()
    check = {"torch_losses": got.tolist(), "candle_losses": want.tolist(), "max_abs_diff": err}
    if err > 1e-3 * max(1.0, want.abs().max().item()):
        print(json.dumps({"error": "losses differ", **check}))
        sys.exit(1)

    out = {"check": check, "threads": torch.get_num_threads(), "torch": torch.__version__,
           "recipe": recipe}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for batch in (64, 128):
        times = []
        rows = batch * views
        for step in range(steps + 2):
            # Distinct real images stand in for the views, as on the candle side.
            xb = torch.cat([x, x.flip(0)])[(step * rows) % (2 * x.shape[0] - rows + 1):][:rows]
            e = torch.randn(rows, eps.shape[1], generator=gen)
            pm = (torch.arange(batch) + 1 + torch.randint(0, batch - 1, (1,), generator=gen)) % batch
            start = time.perf_counter()
            opt.zero_grad()
            gl, ll, pl = model.losses(xb, e, pm)
            (0.5 * gl + 1.5 * ll + 0.01 * pl).backward()
            opt.step()
            if step >= 2:
                times.append(time.perf_counter() - start)
        times.sort()
        out[f"train_b{batch}_images_per_s"] = batch / times[len(times) // 2]
    out["peak_rss_mb_after_train"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with torch.no_grad():
        times = []
        for step in range(steps + 1):
            start = time.perf_counter()
            model.encode(x[:256])
            if step >= 1:
                times.append(time.perf_counter() - start)
        times.sort()
        out["embed_b256_images_per_s"] = 256 / times[len(times) // 2]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
