"""The table of parts: every recurrent core and every sequence model, by name, and how to build one.

Each part is a frozen config dataclass beside its class (the only place its defaults live); the
config's ``name`` field is its key here. :data:`CORES` maps a name to ``(config class, core class)``
and :data:`MODELS` does the same for the sequence models that are not a core plus a readout. Adding
a core is one file (config + class, following :mod:`heed.agents.cores.base`) and one line in
:data:`CORES`; the supervised trainer, recurrent PPO, the glimpse RAM, the command line and the
core-contract tests then take it with no other edit.

    build_core(cfg, input_size)               -> RecurrentCore
    build_model(cfg, input_size, output_size) -> sequence model (a core config: core + linear readout)

On the command line a part is a typed choice: :func:`core_choice` and :func:`model_choice` give the
union of the config classes that tyro turns into subcommands (``core:ntm --core.memory-size 16``),
so a flag the chosen part does not take is a parse error. Checkpoints store
``dataclasses.asdict(cfg)`` (name included) and :func:`part_from_dict` rebuilds the config.

The table lives here, not in ``agents/cores/__init__.py``, because it also names the models of
:mod:`heed.agents.transformer`, which import from ``agents/cores``: one module above both keeps the
imports one-way.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Union

import tyro
from torch import nn

from heed.agents.bytenet import ByteNet, ByteNetConfig
from heed.agents.common.errors import HeedError, suggest
from heed.agents.common.validate import config_from_dict
from heed.agents.cores.act import ACTConfig, ACTCore
from heed.agents.cores.base import RecurrentCore
from heed.agents.cores.dnc import DNCConfig, DNCCore
from heed.agents.cores.gru import GRUConfig, GRUCore
from heed.agents.cores.lstm import LSTMConfig, LSTMCore
from heed.agents.cores.mlp import FeedforwardCore, MLPConfig
from heed.agents.cores.ntm import NTMConfig, NTMCore
from heed.agents.cores.ntm_gru import NTMGRUConfig, NTMGRUCore
from heed.agents.cores.rnn import RNNConfig, RNNCore
from heed.agents.handwriting_ctc import BLSTM, BLSTMConfig
from heed.agents.reader import AttentiveReader, ReaderConfig
from heed.agents.seq2seq import EncoderDecoder, RNNEncDecConfig, RNNSearchConfig
from heed.agents.sequence import RecurrentSequenceModel
from heed.agents.sharnn import SHARNN, SHARNNConfig
from heed.agents.transformer import (
    TransformerConfig,
    TransformerModel,
    UniversalTransformer,
    UTACTConfig,
    UTConfig,
)

#: recurrent cores: name -> (config class, core class); a core is built as ``Core(input_size, cfg)``
CORES: dict[str, tuple[type, type[RecurrentCore]]] = {
    "lstm": (LSTMConfig, LSTMCore),
    "gru": (GRUConfig, GRUCore),
    "rnn": (RNNConfig, RNNCore),
    "mlp": (MLPConfig, FeedforwardCore),
    "ntm": (NTMConfig, NTMCore),
    "dnc": (DNCConfig, DNCCore),
    "act": (ACTConfig, ACTCore),
    "ntm-gru": (NTMGRUConfig, NTMGRUCore),
}

#: sequence models that are not a core plus a readout: name -> (config class, ``Model(D, K, cfg)``)
MODELS: dict[str, tuple[type, type[nn.Module]]] = {
    "transformer": (TransformerConfig, TransformerModel),
    "ut": (UTConfig, UniversalTransformer),
    "ut-act": (UTACTConfig, UniversalTransformer),
    "rnnencdec": (RNNEncDecConfig, EncoderDecoder),  # agents/seq2seq.py, for the seq2seq layout tasks
    "rnnsearch": (RNNSearchConfig, EncoderDecoder),
    "bytenet": (ByteNetConfig, ByteNet),  # agents/bytenet.py: dilated convolutions, no attention (seq2seq layout)
    "sha-rnn": (SHARNNConfig, SHARNN),  # agents/sharnn.py: LSTM + one causal attention head + Boom
    "blstm": (BLSTMConfig, BLSTM),  # agents/handwriting_ctc.py: (bi)directional LSTM stack, the pen recogniser
    "reader": (ReaderConfig, AttentiveReader),  # agents/reader.py: attentive reader over a bAbI story
}


def _entry(name: str, table: dict[str, tuple[type, type]], what: str) -> tuple[type, type]:
    if name not in table:
        raise HeedError(f"unknown {what} '{name}'.{suggest(name, table)} Known: {', '.join(table)}")
    return table[name]


def build_core(cfg: Any, input_size: int) -> RecurrentCore:
    """The core a config describes, taking ``input_size`` (D) inputs per step."""
    config_class, core_class = _entry(cfg.name, CORES, "core")
    if type(cfg) is not config_class:
        raise HeedError(f"core '{cfg.name}' wants a {config_class.__name__}, got a {type(cfg).__name__}")
    try:
        return core_class(input_size, cfg)
    except ValueError as exc:
        raise HeedError(f"core '{cfg.name}': {exc}") from None


def build_model(cfg: Any, input_size: int, output_size: int) -> nn.Module:
    """A sequence model ``[B, T, D] -> (logits [B, T, K], attention, aux_loss)``; a core config gives
    the core plus a linear readout (:class:`~heed.agents.sequence.RecurrentSequenceModel`)."""
    if cfg.name in CORES:
        return RecurrentSequenceModel(build_core(cfg, input_size), output_size)
    config_class, model_class = _entry(cfg.name, MODELS, "model")
    if type(cfg) is not config_class:
        raise HeedError(f"model '{cfg.name}' wants a {config_class.__name__}, got a {type(cfg).__name__}")
    try:
        return model_class(input_size, output_size, cfg)
    except ValueError as exc:
        raise HeedError(f"model '{cfg.name}': {exc}") from None


def part_to_dict(cfg: Any) -> dict[str, Any]:
    """``{"name": ..., field: value, ...}``: what checkpoints and ``config.json`` store."""
    return dataclasses.asdict(cfg)


def part_from_dict(values: dict[str, Any], source: str = "a stored part config") -> Any:
    """The config stored by :func:`part_to_dict` (a core's or a model's), checked before anything is built.

    Types and the ranges declared on the config's fields (sizes, heads, rates) are checked, so a
    crafted ``{"name": "ntm", "memory_size": 1000000000}`` is one :class:`HeedError` line, not an
    allocation; unknown fields are an error.
    """
    if not isinstance(values, dict):
        raise HeedError(f"{source} must be a JSON object, got {type(values).__name__}")
    name = values.get("name")
    if not isinstance(name, str):
        raise HeedError(f"{source} has no 'name'")
    config_class = _entry(name, {**CORES, **MODELS}, "core or model")[0]
    return config_from_dict(config_class, values, f"{source} '{name}'")


def _choice(table: dict[str, tuple[type, type]], defaults: dict[str, Any]) -> Any:
    options = []
    for name, (config_class, _) in table.items():
        default = defaults.get(name, config_class())
        options.append(Annotated[config_class, tyro.conf.subcommand(name, default=default)])
    return Union[tuple(options)]  # noqa: UP007 - a runtime union of the table's configs


def core_choice(defaults: dict[str, Any] | None = None) -> Any:
    """The union of every core config, for a trainer's ``core`` field (tyro: ``core:NAME`` subcommands).

    ``defaults`` overrides a core's own defaults in this trainer (e.g. PPO's smaller NTM); it is
    what ``core:NAME`` starts from and what ``--help`` shows.
    """
    return _choice(CORES, defaults or {})


def model_choice(defaults: dict[str, Any] | None = None) -> Any:
    """Like :func:`core_choice` over the cores and the sequence models (the supervised trainer)."""
    return _choice({**CORES, **MODELS}, defaults or {})
