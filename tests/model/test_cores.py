"""Temporal cores: the streaming invariants, reference layout, parameter counts and bad-input errors (CPU, tiny)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from coldstream.errors import CheckpointError, ConfigError
from coldstream.model.checkpoints import guess_core_kind, load_reference_state_dict, load_rvm_core_checkpoint
from coldstream.model.cores import CoreState, build_core
from coldstream.model.layers.mamba import Mamba
from coldstream.model.layers.mha import MultiheadAttention
from tests.tolerances import assert_close, tol

KINDS = ["identity", "meanpool", "rvmrnn", "mamba", "mambamix", "gmmix"]
B, T, N, D = 2, 6, 9, 64


def make(kind: str, dim: int = D, **options):
    torch.manual_seed(0)
    if kind == "rvmrnn":
        options.setdefault("num_heads", 4)
    return build_core(kind, dim, **options).eval()


def clip(b=B, t=T, n=N, d=D, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, n, d, generator=g)


def run_steps(core, x, state=None, resets=None):
    state = core.init_state(x.shape[0], x.shape[2]) if state is None else state
    ys = []
    for t in range(x.shape[1]):
        y, state = core.step(x[:, t], state, reset=None if resets is None else resets[t])
        ys.append(y)
    return torch.stack(ys, dim=1), state


@pytest.mark.parametrize("kind", KINDS)
def test_steps_equal_clip(kind):
    core, x = make(kind), clip()
    with torch.no_grad():
        y = core(x)
        ys, _ = run_steps(core, x)
    assert y.shape == (B, T, N, D)
    assert_close(ys, y, torch.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_two_segments_equal_whole_clip(kind):
    core, x = make(kind), clip()
    with torch.no_grad():
        y = core(x)
        state = core.init_state(B, N)
        y1 = core(x[:, :2], state)
        y2 = core(x[:, 2:], state)
        # a clip segment then single steps, from the handed-over state
        state2 = core.init_state(B, N)
        core(x[:, :4], state2)
        ys, _ = run_steps(core, x[:, 4:], state2)
    assert_close(torch.cat([y1, y2], dim=1), y, torch.float32)
    assert_close(ys, y[:, 4:], torch.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_causal_and_batch_invariant(kind):
    core, x = make(kind), clip()
    x2 = x.clone()
    x2[:, 3] += torch.randn(B, N, D)
    with torch.no_grad():
        y, y2 = core(x), core(x2)
        alone = torch.cat([core(x[i : i + 1]) for i in range(B)])
    assert_close(y2[:, :3], y[:, :3], torch.float32)
    assert (y2[:, 3] - y[:, 3]).abs().max() > 1e-3
    if kind != "identity":  # the temporal cores carry frame 3 into later frames
        assert (y2[:, 5] - y[:, 5]).abs().max() > 1e-4
    assert_close(alone, y, torch.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_per_stream_reset_equals_separate_runs(kind):
    core, x = make(kind), clip(b=3)
    # stream 1 starts a new video at frame 2, stream 2 at frame 4; stream 0 runs on
    resets = [None, None, torch.tensor([False, True, False]), None, torch.tensor([False, False, True]), None]
    with torch.no_grad():
        ys, _ = run_steps(core, x, resets=resets)
        assert_close(ys[0:1], core(x[0:1]), torch.float32)
        assert_close(ys[1:2, 2:], core(x[1:2, 2:]), torch.float32)
        assert_close(ys[2:3, 4:], core(x[2:3, 4:]), torch.float32)
        assert_close(ys[1:2, :2], core(x[1:2, :2]), torch.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_state_is_fp32_and_updated_in_place(kind):
    core = make(kind)
    state = core.init_state(B, N)
    assert isinstance(state, CoreState)
    assert all(t.dtype == torch.float32 and t.shape[0] == B for t in state.tensors.values())
    ptrs = {k: v.data_ptr() for k, v in state.tensors.items()}
    with torch.no_grad():
        y, same = core.step(clip()[:, 0], state)
        core(clip(), state)
    assert same is state
    assert {k: v.data_ptr() for k, v in state.tensors.items()} == ptrs
    if kind != "identity":
        assert any(v.abs().sum() > 0 for v in state.tensors.values())
        state.reset_()
        assert all(v.abs().sum() == 0 for v in state.tensors.values())


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_autocast_keeps_state_fp32(kind):
    core, x = make(kind), clip()
    with torch.no_grad():
        ref = core(x)
        state = core.init_state(B, N)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = core(x)
            ys, state = run_steps(core, x, state)
            seg_state = core.init_state(B, N)
            segments = torch.cat([core(x[:, :2], seg_state), core(x[:, 2:], seg_state)], dim=1)
    assert all(t.dtype == torch.float32 for t in state.tensors.values())
    assert all(t.dtype == torch.float32 for t in seg_state.tensors.values())
    for out in (y, ys, segments):
        assert torch.isfinite(out).all()
        err = (out.float() - ref).norm() / ref.norm()
        assert err < 4 * tol(torch.bfloat16)["rtol"], f"{kind}: bf16 relative error {err:.3g}"


@pytest.mark.parametrize("kind", KINDS)
def test_backward_reaches_every_parameter(kind):
    core = make(kind).train()
    x = clip().requires_grad_()
    core(x).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in core.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_input_projection():
    core = make("mamba", in_dim=96)
    x = clip(d=96)
    with torch.no_grad():
        y = core(x)
        ys, _ = run_steps(core, x)
    assert y.shape == (B, T, N, D)
    assert_close(ys, y, torch.float32)
    with pytest.raises(ValueError, match="input projection"):
        load_reference_state_dict(core, make("mamba").state_dict())


def _rvmrnn_keys(layers):
    keys = [f"{n}.weight" for n in ("input_update", "input_reset", "state_update", "state_reset")]
    keys += ["state_layer_norm.weight", "state_layer_norm.bias", "transformer.output_norm.weight"]
    keys += ["transformer.output_norm.bias", "output_norm.weight", "output_norm.bias"]
    for i in range(layers):
        p = f"transformer.layers.{i}."
        keys += [p + f"{n}.{w}" for n in ("ca_norm", "mlp_norm", "sa_norm") for w in ("weight", "bias")]
        keys += [
            p + f"{a}.{w}"
            for a in ("ca_attn", "sa_attn")
            for w in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
        ]
        keys += [p + f"mlp.{f}.{w}" for f in ("fc1", "fc2") for w in ("weight", "bias")]
    return keys


def _mamba_keys(layers, spatial=False, gates=False):
    keys = ["output_norm.weight", "output_norm.bias"]
    for i in range(layers):
        p = f"mamba_blocks.{i}."
        keys += [p + "norm.weight", p + "norm.bias"]
        keys += [
            p + "mamba." + k
            for k in (
                "in_proj.weight",
                "conv1d.weight",
                "conv1d.bias",
                "x_proj.weight",
                "dt_proj.weight",
                "dt_proj.bias",
                "A_log",
                "D",
                "out_proj.weight",
            )
        ]
        if spatial:
            p = f"spatial_blocks.{i}."
            keys += [p + f"{n}.{w}" for n in ("sa_norm", "mlp_norm") for w in ("weight", "bias")]
            keys += [p + f"sa_attn.{w}" for w in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")]
            keys += [p + f"mlp.{f}.{w}" for f in ("fc1", "fc2") for w in ("weight", "bias")]
        if gates:
            keys += [f"gates.{i}.weight", f"gates.{i}.bias"]
    return keys


REFERENCE_KEYS = {
    "identity": ["output_norm.weight", "output_norm.bias"],
    "rvmrnn": _rvmrnn_keys(4),
    "mamba": _mamba_keys(4),
    "mambamix": _mamba_keys(4, spatial=True),
    "gmmix": _mamba_keys(4, spatial=True, gates=True),
}


@pytest.mark.parametrize("kind", sorted(REFERENCE_KEYS))  # the paper's cores (meanpool is ours)
def test_reference_layout_loads_strictly(kind):
    core = make(kind)
    sd = core.state_dict()
    assert sorted(sd) == sorted(REFERENCE_KEYS[kind])  # docs/model.md §6, written out independently of the modules
    assert guess_core_kind(sd) == kind
    if kind in ("mamba", "gmmix"):
        e = 2 * D
        assert sd["mamba_blocks.0.mamba.conv1d.weight"].shape == (e, 1, 4)
        assert sd["mamba_blocks.0.mamba.A_log"].shape == (e, 16)
        assert sd["mamba_blocks.0.mamba.x_proj.weight"].shape == (math.ceil(D / 16) + 32, e)
    if kind == "gmmix":
        assert sd["gates.0.weight"].shape == (D, 2 * D)
    torch.manual_seed(5)
    src = build_core(kind, D, **({"num_heads": 4} if kind == "rvmrnn" else {})).eval()
    prefixed = {"sequential_core." + k: v for k, v in src.state_dict().items()}
    load_reference_state_dict(core, prefixed)
    x = clip()
    with torch.no_grad():
        assert_close(core(x), src(x), torch.float32)


def test_reference_loading_errors_are_clear():
    core = make("gmmix")
    sd = core.state_dict()
    with pytest.raises(CheckpointError, match="missing 2 key.*gates.3.bias"):
        load_reference_state_dict(core, {k: v for k, v in sd.items() if not k.startswith("gates.3")})
    with pytest.raises(CheckpointError, match="unexpected 1 key.*bogus"):
        load_reference_state_dict(core, {**sd, "bogus.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="for a 'mamba' core but the core is 'gmmix'"):
        load_reference_state_dict(core, make("mamba").state_dict())
    with pytest.raises(CheckpointError, match="for a 'rvmrnn' core but the core is 'gmmix'"):
        load_reference_state_dict(core, make("rvmrnn").state_dict())
    with pytest.raises(CheckpointError, match=r"mis-shaped \d+ key.*expected \("):
        load_reference_state_dict(core, make("gmmix", dim=32).state_dict())


def test_rvm_core_initialisation():
    core = make("rvmrnn")
    torch.manual_seed(3)
    rvm = build_core("rvmrnn", D, num_heads=4)
    sd = {"rvm_core." + k: v for k, v in rvm.state_dict().items() if not k.startswith("output_norm.")}
    sd["encoder.layers.0.weight"] = torch.zeros(1)  # the RVM encoder's keys are ignored
    load_rvm_core_checkpoint(core, sd)
    assert torch.equal(core.input_update.weight, rvm.input_update.weight)
    assert torch.equal(core.output_norm.weight, torch.ones(D))  # no RVM counterpart: identity init
    with pytest.raises(ValueError, match="rvmrnn"):
        load_rvm_core_checkpoint(make("gmmix"), sd)
    del sd["rvm_core.state_reset.weight"]
    with pytest.raises(CheckpointError, match="missing 1 key.*state_reset"):
        load_rvm_core_checkpoint(core, sd)


def test_multihead_attention_matches_torch_layout():
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(D, 4, batch_first=True).eval()
    ours = MultiheadAttention(D, 4)
    ours.load_state_dict(ref.state_dict())
    q, kv = torch.randn(2, 5, D), torch.randn(2, 7, D)
    with torch.no_grad():
        assert_close(ours(q, kv), ref(q, kv, kv, need_weights=False)[0], torch.float32)
        assert_close(ours(q), ref(q, q, q, need_weights=False)[0], torch.float32)


def _mamba_oracle(m: Mamba, u: torch.Tensor) -> torch.Tensor:
    """docs/model.md §2.2's equations written out as a plain loop over time (independent of coldstream.kernels)."""
    s, t, _ = u.shape
    xz = m.in_proj(u)
    xi, zeta = xz.chunk(2, dim=-1)
    w = m.conv1d.weight[:, 0]  # [E, W]
    pad = torch.cat([xi.new_zeros(s, m.d_conv - 1, m.d_inner), xi], dim=1)
    xc = F.silu(torch.stack([(pad[:, i : i + m.d_conv] * w.t()).sum(1) for i in range(t)], 1) + m.conv1d.bias)
    dt, bb, cc = torch.split(m.x_proj(xc), [m.dt_rank, m.d_state, m.d_state], dim=-1)
    delta = F.softplus(m.dt_proj(dt))
    a = -torch.exp(m.A_log)
    h = u.new_zeros(s, m.d_inner, m.d_state)
    ys = []
    for i in range(t):
        h = torch.exp(delta[:, i, :, None] * a) * h + (delta[:, i] * xc[:, i])[..., None] * bb[:, i, None, :]
        y = (h * cc[:, i, None, :]).sum(-1) + m.D * xc[:, i]
        ys.append(y * F.silu(zeta[:, i]))
    return m.out_proj(torch.stack(ys, 1))


def test_mamba_mixer_matches_the_spec_equations():
    torch.manual_seed(0)
    m = Mamba(32)
    u = torch.randn(5, 7, 32)
    with torch.no_grad():
        out, conv_f, ssm_f = m(u)
        assert_close(out, _mamba_oracle(m, u), torch.float32)
        assert conv_f.shape == (5, 64, 3) and ssm_f.shape == (5, 64, 16)
        assert torch.allclose(-torch.exp(m.A_log[0]), -torch.arange(1.0, 17.0))
        assert torch.all(F.softplus(m.dt_proj.bias) >= 1e-4 - 1e-7)
        assert torch.all(F.softplus(m.dt_proj.bias) <= 0.1 + 1e-6)


def test_defaults_follow_the_spec():
    c = build_core("rvmrnn", 768)
    assert c.transformer.layers[0].ca_attn.num_heads == 12 and len(c.transformer.layers) == 4
    assert build_core("rvmrnn", 384).transformer.layers[0].sa_attn.num_heads == 8
    g = build_core("gmmix", 384)
    assert g.spatial_blocks[0].sa_attn.num_heads == 16 and g.spatial_blocks[0].drop_path.p == 0.1
    assert g.mamba_blocks[0].dropout.p == 0.1 and g.mamba_blocks[0].mamba.dt_rank == 24
    assert build_core("mmix", 64).kind == "mambamix" and build_core("M", 64).kind == "mamba"


def test_parameter_counts_match_the_paper():
    """The paper's counts: DINOv3-L (303.15 M) + enrichment (16.80 M) + M / MMix / GMMix = 346.6 / 397.0 / 405.4 M."""
    backbone = 303_154_176  # DINOv3 ViT-L/16 (checked against the encoder in test_video_model)
    enrichment = 4 * (2 * 1024 + 4 * 1024 * 1024 + 3 * 1024)  # docs/model.md §1.3: 4 · (2D + 4D² + 3D)
    expected = {"mamba": 346.6, "mambamix": 397.0, "gmmix": 405.4, "rvmrnn": 391.3}
    with torch.device("meta"):
        for kind, total in expected.items():
            core = build_core(kind, 1024)
            n = sum(p.numel() for p in core.parameters())
            assert round((backbone + enrichment + n) / 1e6, 1) == total, kind
    with torch.device("meta"):
        assert round(sum(p.numel() for p in build_core("rvmrnn", 1024).parameters()) / 1e6, 2) == 71.39


def test_bad_inputs_raise_clear_errors():
    core = make("mamba")
    with pytest.raises(ValueError, match=r"rank-4.*\[B, T, N, D\].*D=64"):
        core(torch.randn(T, N, D))
    with pytest.raises(ValueError, match="width D=64"):
        core(torch.randn(B, T, N, 32))
    with pytest.raises(ValueError, match="T=0"):
        core(torch.randn(B, 0, N, D))
    state = core.init_state(B, N)
    with pytest.raises(ValueError, match=r"rank-3.*\[B, N, D\]"):
        core.step(torch.randn(B, 1, N, D), state)
    with pytest.raises(ValueError, match="built for batch=2.*has batch=3"):
        core.step(torch.randn(3, N, D), state)
    with pytest.raises(ValueError, match="tokens=9.*tokens=5"):
        core(torch.randn(B, T, 5, D), state)
    with pytest.raises(ValueError, match="built by a 'rvmrnn' core"):
        core.step(torch.randn(B, N, D), make("rvmrnn").init_state(B, N))
    with pytest.raises(ValueError, match="lives on meta"):
        core.step(torch.randn(B, N, D), core.init_state(B, N, device="meta"))
    with pytest.raises(ValueError, match="float32"):
        core.init_state(B, N, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        state.reset_(torch.tensor([True]))
    with pytest.raises(ConfigError, match="unknown core 'lstm'; known: .*gmmix"):
        build_core("lstm", D)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['heads'\]; accepted: .*d_state"):
        build_core("mamba", D, heads=3)
    with pytest.raises(ValueError, match="kernel backend"):
        core.set_kernel_backend("cuda")
    core.set_kernel_backend("reference")
    assert {m.kernel_backend for m in core.modules() if hasattr(m, "kernel_backend")} == {"reference"}


def _rvmrnn_oracle(core, x):
    """docs/model.md §2.1 written out with torch.nn.MultiheadAttention holding the core's weights."""
    heads = core.transformer.layers[0].ca_attn.num_heads

    def mha(ours):
        m = torch.nn.MultiheadAttention(D, heads, batch_first=True)
        m.load_state_dict(ours.state_dict())
        return lambda q, kv: m(q, kv, kv, need_weights=False)[0]

    blocks = [(blk, mha(blk.ca_attn), mha(blk.sa_attn)) for blk in core.transformer.layers]
    s = x.new_zeros(x.shape[0], x.shape[2], D)
    outs = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        u = torch.sigmoid(xt @ core.input_update.weight.T + s @ core.state_update.weight.T)
        r = torch.sigmoid(xt @ core.input_reset.weight.T + s @ core.state_reset.weight.T)
        m = r * F.layer_norm(s, (D,), core.state_layer_norm.weight, core.state_layer_norm.bias, 1e-6)
        z = xt
        for blk, ca, sa in blocks:
            z = z + ca(blk.ca_norm(z), m)
            z = z + blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.mlp_norm(z))))
            zn = blk.sa_norm(z)
            z = z + sa(zn, zn)
        h = core.transformer.output_norm(z)
        s = (1 - u) * s + u * h
        outs.append(core.output_norm(s))
    return torch.stack(outs, 1)


def test_rvmrnn_matches_the_spec_equations():
    core, x = make("rvmrnn"), clip(t=3)
    with torch.no_grad():
        assert_close(core(x), _rvmrnn_oracle(core, x), torch.float32)


def test_meanpool_is_blind_to_frame_order_at_the_last_frame_and_the_cores_are_not():
    x = clip(t=8)
    rev = x.flip(1)
    with torch.no_grad():
        blind = make("meanpool")
        assert_close(blind(rev)[:, -1], blind(x)[:, -1], torch.float32)
        assert_close(blind(x)[:, -1], blind.output_norm(x.mean(dim=1)), torch.float32)  # the mean of all frames
        for kind in ("rvmrnn", "mamba", "gmmix"):
            seeing = make(kind)
            assert not torch.allclose(seeing(rev)[:, -1], seeing(x)[:, -1], atol=1e-3), kind
