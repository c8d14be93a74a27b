"""Small real-world models for tests and benchmarks: tiny transformers models and plain-torch architecture patterns.

Not a test module (nothing here is collected): tests import it as ``realmodels`` (pytest puts ``tests/`` on
``sys.path``), benchmarks after adding ``tests/`` to ``sys.path`` themselves.

Every factory returns a :class:`RealModel`: the model in eval mode, built from a config at a tiny size with
random weights (no download), its example inputs, and the qualified names of its repeated blocks. Weights
come from the model's own default initialization run under a fixed seed inside ``torch.random.fork_rng``,
so building never moves the caller's global RNG; inputs come from a fixed ``torch.Generator``.

>>> rm = build("gpt2")
>>> rm.run().shape
torch.Size([2, 16, 128])
>>> sorted(ALL)[:3]
['bert', 'convnext', 'glu_mlp']

Layout notes (things a reader of the weights trips over):

* ``gpt2``: ``lm_head.weight`` is ``transformer.wte.weight`` (tied); ``c_attn``/``c_proj``/``c_fc`` are
  ``transformers.pytorch_utils.Conv1D`` whose weight is stored ``(in_features, out_features)``, the
  transpose of ``nn.Linear``.
* ``opt``: ``lm_head.weight`` is ``model.decoder.embed_tokens.weight`` (tied).
* ``bert``: ``cls.predictions.decoder.weight`` is ``bert.embeddings.word_embeddings.weight`` (tied); the
  decoder bias is ``cls.predictions.bias``.
* ``t5``: ``shared``, ``encoder.embed_tokens``, ``decoder.embed_tokens`` and ``lm_head`` share one weight;
  attention has no ``1/sqrt(d)`` (folded into the init of ``q``), and the decoder output is multiplied by
  ``d_model ** -0.5`` before ``lm_head`` (``config.scale_decoder_outputs``).
* ``llama``/``qwen2``/``mistral``: untied ``lm_head``; grouped-query attention (2 key/value heads).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["RealModel", "ALL", "TRANSFORMERS", "PATTERNS", "build", "call_model", "main_output", "MODEL_SEED",
           "INPUT_SEED"]

MODEL_SEED = 0
INPUT_SEED = 1234

# transformers sizes: hidden 64, 2 layers, 4 heads, vocab 128, batch 2 x 16 tokens
HIDDEN, LAYERS, HEADS, VOCAB, FFN = 64, 2, 4, 128, 256
TEXT_BATCH, SEQ = 2, 16
# vision sizes: batch 8 x 3 x 32 x 32, 10 classes
IMAGE_BATCH, IMAGE, CLASSES = 8, 32, 10


# --------------------------------------------------------------------------------------------------
# the record


def call_model(model: nn.Module, inputs: Any) -> Any:
    """``model(**inputs)`` for a dict, ``model(*inputs)`` for a tuple/list, else ``model(inputs)``."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def main_output(out: Any) -> Tensor:
    """The main tensor of a model output: ``logits`` if present, else ``last_hidden_state``, else the tensor."""
    if isinstance(out, Tensor):
        return out
    for key in ("logits", "last_hidden_state"):
        value = out.get(key) if isinstance(out, dict) else getattr(out, key, None)
        if isinstance(value, Tensor):
            return value
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"no main output tensor in a {type(out).__name__}")


@dataclass
class RealModel:
    """A built model with its example inputs.

    Attributes:
        name: key in :data:`ALL`.
        model: the module, in eval mode, with its own default initialization.
        inputs: a tensor, a tuple of positional inputs or a dict of keyword inputs (see :func:`call_model`).
        family: ``causal_lm``, ``masked_lm``, ``seq2seq_lm``, ``vision_transformer``, ``convnet`` or ``mlp``.
        blocks: qualified names of the repeated blocks (``transformer.h.0``, ``model.layers.1``...).
        source: ``transformers`` or ``pattern`` (a plain-torch reproduction of a timm/torchvision pattern).
        output: maps the raw model output to the main tensor (default :func:`main_output`).
        init_kwargs: what the family needs from ``initlab.init_model`` beyond the defaults
            (docs/real_models.md).
    """

    name: str
    model: nn.Module
    inputs: Any
    family: str
    blocks: list[str]
    source: str = "pattern"
    output: Callable[[Any], Tensor] = field(default=main_output, repr=False)
    init_kwargs: dict[str, Any] = field(default_factory=dict)

    def forward(self, model: nn.Module | None = None) -> Any:
        """The raw output of ``model`` (default: this record's model) on :attr:`inputs`."""
        return call_model(self.model if model is None else model, self.inputs)

    def run(self, model: nn.Module | None = None) -> Tensor:
        """The main output tensor (logits, or the last hidden state) of ``model`` on :attr:`inputs`."""
        return self.output(self.forward(model))


@contextlib.contextmanager
def _seeded(seed: int = MODEL_SEED) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _finish(name: str, model: nn.Module, inputs: Any, family: str, blocks: list[str], source: str) -> RealModel:
    names = dict(model.named_modules())
    missing = [b for b in blocks if b not in names]
    if missing or not blocks:  # fail loudly here, not in the test that uses the names
        raise RuntimeError(f"{name}: no module named {missing or 'blocks'}")
    return RealModel(name, model.eval(), inputs, family, blocks, source)


def _blocks(model: nn.Module, *lists: str) -> list[str]:
    """``[f"{prefix}.{i}"]`` for each ModuleList ``prefix`` found (transformers renames them between releases)."""
    names = dict(model.named_modules())
    found: list[str] = []
    for alternatives in lists:
        for prefix in alternatives.split("|"):
            if isinstance(names.get(prefix), nn.ModuleList):
                found += [f"{prefix}.{i}" for i in range(len(names[prefix]))]
                break
    return found


def _token_ids(rows: int = TEXT_BATCH, seq: int = SEQ, offset: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(INPUT_SEED + offset)
    return torch.randint(3, VOCAB, (rows, seq), generator=gen)  # skip ids 0-2 (pad/bos/eos in the configs)


def _images(batch: int = IMAGE_BATCH) -> Tensor:
    return torch.randn(batch, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(INPUT_SEED))


# --------------------------------------------------------------------------------------------------
# transformers models (configs only, random weights)

_COMMON = {"attn_implementation": "eager", "use_cache": False}


def _hf(cls_name: str, config_name: str, **config: Any) -> nn.Module:
    import transformers

    cfg = getattr(transformers, config_name)(**_COMMON, **config)
    with _seeded():
        return getattr(transformers, cls_name)(cfg)


def gpt2() -> RealModel:
    """GPT2LMHeadModel: Conv1D layers (weight stored (in, out)), lm_head tied to wte."""
    model = _hf("GPT2LMHeadModel", "GPT2Config", vocab_size=VOCAB, n_positions=64, n_embd=HIDDEN, n_layer=LAYERS,
                n_head=HEADS, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    return _finish("gpt2", model, {"input_ids": _token_ids()}, "causal_lm",
                   _blocks(model, "transformer.h"), "transformers")


def opt() -> RealModel:
    """OPTForCausalLM: pre-LN, ReLU MLP, lm_head tied to embed_tokens."""
    model = _hf("OPTForCausalLM", "OPTConfig", vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                ffn_dim=FFN, max_position_embeddings=64, word_embed_proj_dim=HIDDEN, num_attention_heads=HEADS,
                dropout=0.0, attention_dropout=0.0, pad_token_id=1, bos_token_id=2, eos_token_id=2)
    return _finish("opt", model, {"input_ids": _token_ids()}, "causal_lm",
                   _blocks(model, "model.decoder.layers"), "transformers")


def bert() -> RealModel:
    """BertForMaskedLM: post-LN encoder, MLM head decoder tied to the word embeddings."""
    model = _hf("BertForMaskedLM", "BertConfig", vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                num_attention_heads=HEADS, intermediate_size=FFN, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0, max_position_embeddings=64, pad_token_id=0)
    return _finish("bert", model, {"input_ids": _token_ids()}, "masked_lm",
                   _blocks(model, "bert.encoder.layer|bert.encoder.layers"), "transformers")


def t5() -> RealModel:
    """T5ForConditionalGeneration: RMS-norm, relative position bias, one weight for shared/embeds/lm_head."""
    model = _hf("T5ForConditionalGeneration", "T5Config", vocab_size=VOCAB, d_model=HIDDEN, d_kv=HIDDEN // HEADS,
                d_ff=FFN, num_layers=LAYERS, num_decoder_layers=LAYERS, num_heads=HEADS, dropout_rate=0.0,
                pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    inputs = {"input_ids": _token_ids(), "decoder_input_ids": _token_ids(offset=1)}
    blocks = _blocks(model, "encoder.block|encoder.layers", "decoder.block|decoder.layers")
    return _finish("t5", model, inputs, "seq2seq_lm", blocks, "transformers")


def _llama_like(name: str, cls_name: str, config_name: str, **extra: Any) -> RealModel:
    model = _hf(cls_name, config_name, vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN,
                num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=2,
                max_position_embeddings=64, tie_word_embeddings=False, **extra)
    return _finish(name, model, {"input_ids": _token_ids()}, "causal_lm",
                   _blocks(model, "model.layers"), "transformers")


def llama() -> RealModel:
    """LlamaForCausalLM: RMSNorm, SwiGLU MLP, rotary embeddings, GQA (2 kv heads), untied lm_head."""
    return _llama_like("llama", "LlamaForCausalLM", "LlamaConfig", head_dim=HIDDEN // HEADS, pad_token_id=None)


def qwen2() -> RealModel:
    """Qwen2ForCausalLM: as Llama plus q/k/v biases."""
    return _llama_like("qwen2", "Qwen2ForCausalLM", "Qwen2Config")


def mistral() -> RealModel:
    """MistralForCausalLM: as Llama plus (unused at 16 tokens) sliding-window attention."""
    return _llama_like("mistral", "MistralForCausalLM", "MistralConfig", head_dim=HIDDEN // HEADS,
                       sliding_window=SEQ * 4)


def gpt_neox() -> RealModel:
    """GPTNeoXForCausalLM: parallel residual, fused qkv, partial rotary, untied embed_out."""
    model = _hf("GPTNeoXForCausalLM", "GPTNeoXConfig", vocab_size=VOCAB, hidden_size=HIDDEN,
                num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN,
                max_position_embeddings=64, attention_dropout=0.0, hidden_dropout=0.0, bos_token_id=0,
                eos_token_id=0)
    return _finish("gpt_neox", model, {"input_ids": _token_ids()}, "causal_lm",
                   _blocks(model, "gpt_neox.layers"), "transformers")


def vit() -> RealModel:
    """ViTForImageClassification: 32x32 images, 8x8 patches (16 + class token), 10 labels."""
    model = _hf("ViTForImageClassification", "ViTConfig", hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                num_attention_heads=HEADS, intermediate_size=FFN, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0, image_size=IMAGE, patch_size=8, num_channels=3,
                num_labels=CLASSES)
    return _finish("vit", model, {"pixel_values": _images()}, "vision_transformer",
                   _blocks(model, "vit.layers|vit.encoder.layer"), "transformers")


# --------------------------------------------------------------------------------------------------
# plain-torch reproductions of timm / torchvision patterns


class SqueezeExcite(nn.Module):
    """timm SE: ``x * sigmoid(conv_expand(silu(conv_reduce(mean(x)))))``."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1)
        self.act = nn.SiLU()
        self.conv_expand = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        s = self.gate(self.conv_expand(self.act(self.conv_reduce(self.pool(x)))))
        return x * s


class MBConv(nn.Module):
    """Inverted residual (EfficientNet/MobileNetV3): expand 1x1, depthwise 3x3, SE, project 1x1, residual."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, expand: int = 4) -> None:
        super().__init__()
        mid = c_in * expand
        self.conv_pw = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.act1 = nn.SiLU()
        self.conv_dw = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.act2 = nn.SiLU()
        self.se = SqueezeExcite(mid, max(1, c_in // 4))
        self.conv_pwl = nn.Conv2d(mid, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.has_skip = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.act1(self.bn1(self.conv_pw(x)))
        y = self.act2(self.bn2(self.conv_dw(y)))
        y = self.bn3(self.conv_pwl(self.se(y)))
        return x + y if self.has_skip else y


class MBConvNet(nn.Module):
    """EfficientNet-like: stem conv/BN/SiLU, 5 MBConv blocks, head conv/BN/SiLU, pool, Linear."""

    STAGES = ((16, 16, 1), (16, 24, 2), (24, 24, 1), (24, 40, 2), (40, 40, 1))

    def __init__(self, num_classes: int = CLASSES, head: int = 128) -> None:
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.act1 = nn.SiLU()
        self.blocks = nn.Sequential(*[MBConv(i, o, s) for i, o, s in self.STAGES])
        self.conv_head = nn.Conv2d(self.STAGES[-1][1], head, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(head)
        self.act2 = nn.SiLU()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.act1(self.bn1(self.conv_stem(x))))
        x = self.global_pool(self.act2(self.bn2(self.conv_head(x))))
        return self.classifier(torch.flatten(x, 1))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (permute to channels-last and back)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: dw 7x7, LayerNorm, Linear 4x, GELU, Linear, layer scale ``gamma`` (1e-6), residual."""

    def __init__(self, dim: int, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        y = self.dwconv(x).permute(0, 2, 3, 1)  # NHWC
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        y = (self.gamma * y).permute(0, 3, 1, 2)
        return shortcut + y


class ConvNeXtNet(nn.Module):
    """ConvNeXt-like: patchify stem (4x4/4) + LN, 2 stages of 2 blocks, LN + 2x2/2 downsample, pool, LN, Linear."""

    def __init__(self, dims: tuple[int, int] = (32, 64), depth: int = 2, num_classes: int = CLASSES) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), LayerNorm2d(dims[0], eps=1e-6))
        self.downsample = nn.Sequential(LayerNorm2d(dims[0], eps=1e-6), nn.Conv2d(dims[0], dims[1], 2, stride=2))
        self.stages = nn.ModuleList([nn.Sequential(*[ConvNeXtBlock(d) for _ in range(depth)]) for d in dims])
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages[0](self.stem(x))
        x = self.stages[1](self.downsample(x))
        return self.head(self.norm(x.mean((2, 3))))


class Attention(nn.Module):
    """timm-style attention: fused qkv Linear, ``softmax(q k^T / sqrt(d)) v``, output projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """fc1, GELU, fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ViTBlock(nn.Module):
    """Pre-LN transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio * dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTNet(nn.Module):
    """ViT-like: conv patch embedding, class token (torch.cat), learned position embedding, blocks, head on cls."""

    def __init__(self, dim: int = HIDDEN, depth: int = 4, heads: int = HEADS, patch: int = 8, image: int = IMAGE,
                 num_classes: int = CLASSES) -> None:
        super().__init__()
        n = (image // patch) ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.blocks = nn.Sequential(*[ViTBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


class ResBlock(nn.Module):
    """torchvision BasicBlock: conv-BN-ReLU-conv-BN, plus the shortcut (1x1 conv + BN when shapes change), ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + identity)


class ResNetBN(nn.Module):
    """ResNet-like: stem conv/BN/ReLU, layer1 (2 blocks, 16 ch), layer2 (2 blocks, 32 ch, projection shortcut)."""

    def __init__(self, num_classes: int = CLASSES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(ResBlock(16, 16), ResBlock(16, 16))
        self.layer2 = nn.Sequential(ResBlock(16, 32, stride=2), ResBlock(32, 32))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class GLU(nn.Module):
    """``down(up(x) * sigmoid(gate(x)))``, no bias (Dauphin et al. 2017; SwiGLU puts silu on the gate)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.up(x) * torch.sigmoid(self.gate(x)))


def mbconv() -> RealModel:
    """EfficientNet/MobileNetV3-like MBConv net with squeeze-excitation."""
    with _seeded():
        model = MBConvNet()
    return _finish("mbconv", model, _images(), "convnet", [f"blocks.{i}" for i in range(len(MBConvNet.STAGES))],
                   "pattern")


def convnext() -> RealModel:
    """ConvNeXt-like net with layer scale 1e-6."""
    with _seeded():
        model = ConvNeXtNet()
    return _finish("convnext", model, _images(), "convnet", [f"stages.{s}.{i}" for s in range(2) for i in range(2)],
                   "pattern")


def vit_cls() -> RealModel:
    """Plain-torch ViT with a class token and zero-initialized cls_token / pos_embed parameters."""
    with _seeded():
        model = ViTNet()
    return _finish("vit_cls", model, _images(), "vision_transformer", [f"blocks.{i}" for i in range(4)], "pattern")


def resnet_bn() -> RealModel:
    """ResNet-like BatchNorm net (eval mode: BN uses its running statistics, 0 and 1 as constructed)."""
    with _seeded():
        model = ResNetBN()
    rm = _finish("resnet_bn", model, _images(), "convnet", [f"layer{s}.{i}" for s in (1, 2) for i in range(2)],
                 "pattern")
    # evaluated with fresh running statistics, BatchNorm is the identity, and the residual sums double the
    # variance per block unless each branch starts at zero (timm's zero_init_last)
    rm.init_kwargs = {"residual": "zero_last"}
    return rm


def glu_mlp() -> RealModel:
    """6 GLU blocks (64 -> 128 -> 64), no normalization, no residuals: a deep stack of sigmoid gates.

    (A SwiGLU stack without normalization is unstable whatever the scale: its length map q -> ~q^2 has
    slope 2.17 at the fixed point, which init_model reports; Llama/Qwen2/Mistral carry SwiGLU with norms.)"""
    with _seeded():
        model = nn.Sequential()
        model.add_module("blocks", nn.Sequential(*[GLU(HIDDEN, 2 * HIDDEN) for _ in range(6)]))
    x = torch.randn(32, HIDDEN, generator=torch.Generator().manual_seed(INPUT_SEED))
    return _finish("glu_mlp", model, x, "mlp", [f"blocks.{i}" for i in range(6)], "pattern")


ALL: dict[str, Callable[[], RealModel]] = {
    "gpt2": gpt2,
    "opt": opt,
    "bert": bert,
    "t5": t5,
    "llama": llama,
    "qwen2": qwen2,
    "mistral": mistral,
    "gpt_neox": gpt_neox,
    "vit": vit,
    "mbconv": mbconv,
    "convnext": convnext,
    "vit_cls": vit_cls,
    "resnet_bn": resnet_bn,
    "glu_mlp": glu_mlp,
}
TRANSFORMERS = [n for n in ALL if n not in ("mbconv", "convnext", "vit_cls", "resnet_bn", "glu_mlp")]
PATTERNS = [n for n in ALL if n not in TRANSFORMERS]


def build(name: str) -> RealModel:
    """A freshly built :class:`RealModel` (same weights and inputs every call)."""
    try:
        factory = ALL[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(ALL)}") from None
    return factory()
