"""Sequence-model builders for the memory cores: ``lstm``, ``ntm``, ``dnc`` in :data:`SEQUENCE_MODELS`.

Each builder is ``(input_size, output_size, **options) -> RecurrentSequenceModel``; the options are
the core's constructor arguments (the trainer passes only those a builder accepts).
"""

from __future__ import annotations

from heed.agents.cores.dnc import DNCCore
from heed.agents.cores.lstm import LSTMCore
from heed.agents.cores.ntm import NTMCore
from heed.agents.sequence import RecurrentSequenceModel, register_model


@register_model("lstm")
def build_lstm(
    input_size: int, output_size: int, hidden_size: int = 100, learn_initial_state: bool = False
) -> RecurrentSequenceModel:
    """An LSTM core and a linear readout."""
    return RecurrentSequenceModel(LSTMCore(input_size, hidden_size, learn_initial_state), output_size)


@register_model("ntm")
def build_ntm(
    input_size: int,
    output_size: int,
    hidden_size: int = 100,
    memory_size: int = 128,
    memory_width: int = 20,
    read_heads: int = 1,
    write_heads: int = 1,
    controller: str = "lstm",
    shift_range: int = 1,
    memory_init: float = 1e-6,
    clip: float = 20.0,
    weight_init: str = "first",
) -> RecurrentSequenceModel:
    """An NTM core (see :class:`agents.cores.ntm.NTMCore`) and a linear readout."""
    core = NTMCore(
        input_size, hidden_size, memory_size, memory_width, read_heads, write_heads, controller, shift_range,
        memory_init, clip, weight_init,
    )
    return RecurrentSequenceModel(core, output_size)


@register_model("dnc")
def build_dnc(
    input_size: int,
    output_size: int,
    hidden_size: int = 100,
    memory_size: int = 32,
    memory_width: int = 20,
    read_heads: int = 2,
    write_heads: int = 1,
    memory_init: float = 1e-6,
    clip: float = 20.0,
) -> RecurrentSequenceModel:
    """A DNC core (see :class:`agents.cores.dnc.DNCCore`) and a linear readout."""
    core = DNCCore(input_size, hidden_size, memory_size, memory_width, read_heads, write_heads, memory_init, clip)
    return RecurrentSequenceModel(core, output_size)
