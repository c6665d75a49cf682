"""Write text by hand with a trained synthesis network: the window alignment figure, styles, the pen GIF.

    heed synthesize --text "heed the window" --bias 1.0 --styles 3 --out-dir docs/figures/handwriting
    heed synthesize --checkpoint runs/synthesis-nowindow --text "heed the window" --out-dir docs/figures/handwriting

``--checkpoint`` takes a synthesis run dir, a checkpoint dir or a shipped folder (default: the shipped
``agents/pretrained/synthesis``). Writes into ``--out-dir`` (``PREFIX`` is ``synthesis``, or
``synthesis_nowindow`` for a model without the window):

- ``PREFIX_alignment.png``: the line written without priming, above the window ``phi(t, u)`` (the
  lecture's alignment figure; a model without a window has none, so only its line is drawn);
- ``PREFIX_styles.png``: the text in ``--styles`` held-out writers' hands: each time the network first
  reads a real line by that writer (priming, Graves 2013 §5.5), then writes the text;
- ``PREFIX_writing.gif`` (or ``.mp4``): the pen writing the unprimed line, the window's letter in red;
- ``PREFIX.json``: what was written (points, whether the stop rule ended each line) and, with
  ``--recogniser`` (a pen recogniser: run dir or shipped folder), what it reads in each written line
  and the character error rate over ``--read-back`` lines per style (a measure of legibility), beside
  its CER on as many lines of the same text written by the data generator for held-out writers.

Sampling: ``sigma = exp(sigma^ - b)``, ``pi ∝ exp(pi^ (1 + b))`` with ``b = --bias``; a line ends when
the window passes the last letter (``phi(t, U) > phi(t, u)`` for all ``u < U``) or after
``--steps-per-letter`` points a letter (the only end a model without a window has). ``--export DIR``
instead ships the checkpoint's weights as fp16 safetensors + JSON (what ``agents/pretrained/synthesis`` is).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch

from heed.agents.common.checkpoint import claim_export_dir
from heed.agents.common.cli import parse_config
from heed.agents.common.errors import HeedError, cli_main
from heed.agents.common.safe_io import OutputFolder, disk_errors, write_json_atomic
from heed.agents.common.validate import NonNegative, Range, SeedRange, validate

SHIPPED = Path(__file__).resolve().parents[1] / "agents" / "pretrained" / "synthesis"


@dataclass(frozen=True)
class Config:
    """Handwriting synthesis figures from a trained network."""

    checkpoint: Path = SHIPPED
    """synthesis run dir, checkpoint dir or shipped folder (default: the shipped model)"""
    text: str = "heed the window"
    """what to write (lowercase letters and spaces)"""
    bias: Annotated[float, NonNegative] = 1.0
    """sampling bias b (0: the trained distribution; larger: neater, less varied)"""
    styles: Annotated[int, Range(0, 12)] = 3
    """held-out writers whose hand is primed (0: no styles figure)"""
    out_dir: Path = Path("synthesis")
    """where the figures go"""
    seed: Annotated[int, SeedRange] = 0
    """sampling seed (and which held-out writers and prime lines)"""
    steps_per_letter: Annotated[int, Range(1, 200)] = 25
    """a line ends after this many points a letter if the stop rule has not ended it"""
    video: Literal["gif", "mp4"] = "gif"
    """format of the writing video"""
    fps: Annotated[float, Range(0.1, 240)] = 20.0
    """video frames per second (one frame per 2 points)"""
    recogniser: Path | None = None
    """a pen recogniser (run dir or shipped folder) that reads the written lines back (CER in the JSON)"""
    read_back: Annotated[int, Range(1, 200)] = 5
    """lines written per style (and unprimed) for the read-back CER"""
    export: Path | None = None
    """ship the checkpoint to this folder (fp16 safetensors + meta.json) and write no figures"""
    overwrite: bool = False
    """replace existing files of the output names that heed did not write"""


def _prime_lines(count: int, seed: int):
    """``count`` real lines (PenSample) by distinct held-out writers, for priming."""
    from heed.envs.handwriting import TEST_WRITERS, sample_text, write, writer_style

    rng = np.random.default_rng([seed, 7])
    writers = rng.choice(len(TEST_WRITERS), size=count, replace=False)
    return [(int(TEST_WRITERS[int(w)]), write(sample_text(rng, 1, 2, "test"), writer_style(int(TEST_WRITERS[int(w)])), rng))
            for w in writers]


def main(cfg: Config) -> dict:
    """Write the figures (or ship the model with ``--export``); returns the summary (also in PREFIX.json)."""
    from heed.agents.handwriting_synthesis import encode_text, export_synthesis, load_synthesis, write_text

    validate(cfg)
    torch.set_num_threads(1)
    export = claim_export_dir(cfg.export, cfg.overwrite) if cfg.export is not None else None
    model = load_synthesis(cfg.checkpoint)
    encode_text([cfg.text], model.cfg.alphabet)  # bad text: one line, before any work
    if export is not None:
        path = export_synthesis(model, export, source=str(cfg.checkpoint))
        print(f"shipped {cfg.checkpoint} to {path}")
        return {"export": str(path)}
    from heed.analysis.handwriting_figures import alignment_figure, samples_figure, writing_frames
    from heed.analysis.video import write_video

    prefix = "synthesis" if model.cfg.window else "synthesis_nowindow"
    folder = OutputFolder(cfg.out_dir, cfg.overwrite)
    paths = {"alignment": folder.claim(f"{prefix}_alignment.png"), "writing": folder.claim(f"{prefix}_writing.{cfg.video}"),
             "summary": folder.claim(f"{prefix}.json")}
    if cfg.styles:
        paths["styles"] = folder.claim(f"{prefix}_styles.png")
    gen = torch.Generator().manual_seed(cfg.seed)
    max_steps = cfg.steps_per_letter * len(cfg.text)

    def line(prime=None):
        return write_text(model, cfg.text, cfg.bias, max_steps, prime, gen)

    plain = line()
    points, phi = plain.points.numpy(), plain.phi.numpy()
    summary: dict = {"checkpoint": str(cfg.checkpoint), "window": model.cfg.window, "text": cfg.text, "bias": cfg.bias,
                     "seed": cfg.seed, "unprimed": {"points": len(points), "stopped": plain.stopped}}
    with disk_errors(cfg.out_dir):
        if model.cfg.window:
            alignment_figure(points, phi, cfg.text, f'"{cfg.text}", bias {cfg.bias:g}', paths["alignment"])
        else:
            samples_figure([(points, f'"{cfg.text}" without the window (the text fed whole)')], path=paths["alignment"])
        frames = writing_frames(points, phi if model.cfg.window else np.zeros((len(points), len(cfg.text) + 1)), cfg.text)
        write_video(paths["writing"], frames + [frames[-1]] * max(1, round(cfg.fps)), fps=cfg.fps)
        primes, styled = _prime_lines(cfg.styles, cfg.seed), []
        if cfg.styles:
            rows = []
            for writer, sample in primes:
                written = line((torch.from_numpy(sample.points), sample.text))
                styled.append(written)
                rows.append((sample.points, f"writer {writer} (held out), real: \"{sample.text}\""))
                rows.append((written.points.numpy(), f"  ... then the network, in that hand: \"{cfg.text}\""))
            samples_figure(rows, f"bias {cfg.bias:g}", paths["styles"])
        summary["styles"] = [{"writer": w, "prime": s.text, "points": len(x.points), "stopped": x.stopped}
                             for (w, s), x in zip(primes, styled)]
        if cfg.recogniser is not None:
            summary["read_back"] = read_back(model, cfg, primes, line)
        write_json_atomic(paths["summary"], summary)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return summary


def read_back(model, cfg: Config, primes, line) -> dict:
    """The recogniser reads ``--read-back`` written lines, unprimed and per style: what it reads, and the CER."""
    from heed.agents.trainers.pen import error_rates, load_recogniser, recognise
    from heed.envs.handwriting import PenSample

    recogniser, _ = load_recogniser(str(cfg.recogniser))
    written = []
    for prime in [None] + [(torch.from_numpy(s.points), s.text) for _, s in primes]:
        written += [line(prime) for _ in range(cfg.read_back)]
    samples = [PenSample(w.points.numpy().astype(np.float32), cfg.text, np.full(len(w.points), -1, np.int64),
                         np.zeros(len(w.points), bool)) for w in written if len(w.points) > 0]
    if not samples:
        raise HeedError("the network wrote no points: nothing to read back")
    readings = recognise(recogniser, samples)
    rates = error_rates(readings, [cfg.text] * len(samples))
    # the same text written by the data generator in the held-out writers' hands: the recogniser's own level
    from heed.envs.handwriting import TEST_WRITERS, write, writer_style

    rng = np.random.default_rng([cfg.seed, 11])
    real = [write(cfg.text, writer_style(int(TEST_WRITERS[int(rng.integers(len(TEST_WRITERS)))])), rng)
            for _ in range(len(samples))]
    real_rates = error_rates(recognise(recogniser, real), [cfg.text] * len(real))
    print(f"read back: CER {rates['cer']:.3f} over {len(samples)} written lines (real lines of the text: "
          f"{real_rates['cer']:.3f}); e.g. {readings[:3]}")
    return {"recogniser": str(cfg.recogniser), "lines": len(samples), "cer": rates["cer"], "wer": rates["wer"],
            "real_cer": real_rates["cer"], "real_wer": real_rates["wer"],
            "readings": readings, "stopped": sum(w.stopped for w in written)}


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="synthesize.py", description=__doc__)))

