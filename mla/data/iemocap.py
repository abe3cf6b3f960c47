"""IEMOCAP (MLA's ``Modal3Dataset``) from USC SAIL's ``IEMOCAP_full_release`` (``mla/acquire/sources.yaml``).

Lists ``my_{train,test}_iemo.txt`` (``<utt>.mp4 [split|sign] <transcript> [split|sign] <Label>``), classes
``stat_iemo.txt`` sorted (0 Angry, 1 Happy, 2 Neutral, 3 Sad). For utterance ``Ses03M_script02_1_M002``
(session 3, dialogue ``Ses03M_script02_1``):

- audio: ``Session3/sentences/wav/Ses03M_script02_1/Ses03M_script02_1_M002.wav`` (16 kHz; [C] converts
  its utterance mp4 to the same 16 kHz WAV, ``data/mp4_to_wav.py`` L17), the Kaldi fbank of [C]
  ``data/extract_fbank.py``;
- image: one frame of the dialogue video ``Session3/dialog/avi/DivX/Ses03M_script02_1.avi``. [C] used the
  middle of the utterance's pre-cropped face frames; here the frame at the middle of the utterance's
  ``[start - end]`` interval in ``Session3/dialog/EmoEvaluation/Ses03M_script02_1.txt``, face-cropped
  (``face.crop: haar``: OpenCV's Haar cascade, the centre square where no face is found, every such
  utterance listed in the manifest; mla/features/face.py) and resized to 256 x 256. The dialogue
  videos show the two actors side by side (720 x 480); ``face.region: speaker`` (default) takes the
  left half when the utterance's speaker (``M`` of ``M002``) is the session's motion-capture actor
  (``M`` of ``Ses03M``) and the right half otherwise. That side rule is not in [C] (its face crops come
  from a tool it does not release): it is what a third-party IEMOCAP face-cropping script does,
  unverified here (no IEMOCAP copy); ``full``, ``left`` or ``right`` override it;
- text: the list's transcript, BERT WordPiece as [C] ``data/preprocess_iemo.py`` L30-41 tokenises it.

The list's label is used. The emotion-merging rule is not in [C], so the manifest records how the list's
labels relate to the EmoEvaluation categories (for example how many "Happy" were "exc").
"""
from __future__ import annotations

import re
from pathlib import Path

from mla.acquire.errors import SplitFormatError
from mla.acquire.official_splits import SplitLists
from mla.acquire.splitlists import read_iemocap_transcripts
from mla.data.samples import MissingFilesError, Resolved, Sample, line_ref, read_lines, sorted_classes
from mla.features.inputs import Input

SPLIT_LISTS = "iemocap"
SECTIONS = ("audio", "image", "face", "text")
EXTRA: dict = {}
LAYOUT = {
    "audio": "Session<n>/sentences/wav/<dialog>/<id>.wav",
    "image": "Session<n>/dialog/avi/DivX/<dialog>.avi, frame at the middle of the utterance's "
             "interval in Session<n>/dialog/EmoEvaluation/<dialog>.txt",
    "text": "the transcript of the list line",
}
_UTTERANCE = re.compile(r"Ses(\d+)[FM]_.+_[FM]\d+")
_EVALUATION = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*\]\s+(\S+)\s+(\S+)\s+\[")


def session_and_dialog(sid: str) -> tuple[int, str]:
    """``Ses03M_script02_1_M002`` -> ``(3, "Ses03M_script02_1")``."""
    m = _UTTERANCE.fullmatch(sid)
    if not m:
        raise ValueError(f"{sid!r} is not an IEMOCAP utterance id (Ses<nn><F|M>_<dialogue>_<F|M><nnn>)")
    return int(m.group(1)), sid.rsplit("_", 1)[0]


def speaker_side(sid: str) -> str:
    """``left`` if the utterance's speaker is the session's motion-capture actor, else ``right``."""
    return "left" if sid.split("_")[0][-1] == sid.rsplit("_", 1)[1][0] else "right"


def read_evaluation(path: Path) -> dict[str, tuple[float, float, str, str]]:
    """``{utterance: (start s, end s, category, "<file>:<line>")}`` from an EmoEvaluation file."""
    out: dict[str, tuple[float, float, str, str]] = {}
    for lineno, line in enumerate(read_lines(path), start=1):
        m = _EVALUATION.match(line)
        if m:
            start, end = float(m.group(1)), float(m.group(2))
            if not end > start:
                raise SplitFormatError(f"{path}:{lineno}: utterance {m.group(3)} ends at {end} s, not after its start {start} s")
            out[m.group(3)] = (start, end, m.group(4), f"{path}:{lineno}")
    return out


def resolve(lists: SplitLists, raw_dir: Path, opts: dict) -> Resolved:
    """Samples per list with their WAV, the dialogue video and frame time, and the transcript."""
    classes, index = sorted_classes(lists)
    where: dict[str, tuple[int, str]] = {}
    for role in ("train", "test"):
        for i, (sid, _label) in enumerate(lists.samples[role]):
            try:
                where[sid] = session_and_dialog(sid)
            except ValueError as exc:
                raise SplitFormatError(f"{line_ref(lists, role, i)}: {exc}") from None
    eval_paths = {d: raw_dir / f"Session{n}" / "dialog" / "EmoEvaluation" / f"{d}.txt" for n, d in where.values()}
    absent = sorted(str(p) for p in eval_paths.values() if not p.is_file())
    if absent:
        raise MissingFilesError(f"iemocap: {len(absent)} EmoEvaluation files are missing (they give each "
                                f"utterance's interval):\n  " + "\n  ".join(absent[:20]))
    evaluations = {d: read_evaluation(p) for d, p in sorted(eval_paths.items())}

    samples: dict[str, list[Sample]] = {}
    crosstab: dict[str, dict[str, int]] = {}
    regions: dict[str, int] = {}
    for role in ("train", "test"):
        transcripts = read_iemocap_transcripts(lists.paths[role])
        samples[role] = []
        for i, (sid, label) in enumerate(lists.samples[role]):
            n, dialog = where[sid]
            if sid not in evaluations[dialog]:
                raise SplitFormatError(f"{line_ref(lists, role, i)}: utterance {sid} has no interval in {eval_paths[dialog]}")
            start, end, category, _ = evaluations[dialog][sid]
            crosstab.setdefault(label, {}).setdefault(category, 0)
            crosstab[label][category] += 1
            session = raw_dir / f"Session{n}"
            region = speaker_side(sid) if opts["face"]["region"] == "speaker" else opts["face"]["region"]
            regions[region] = regions.get(region, 0) + 1
            samples[role].append(Sample(sid, index[label], {
                "audio": Input("wav", session / "sentences" / "wav" / dialog / f"{sid}.wav"),
                "image": Input("face", session / "dialog" / "avi" / "DivX" / f"{dialog}.avi", at=(start + end) / 2,
                               region=region),
                "text": Input("text", text=transcripts[sid]),
            }))
    notes = {"label_vs_emo_evaluation": {k: dict(sorted(v.items())) for k, v in sorted(crosstab.items())},
             "face_regions": dict(sorted(regions.items()))}
    return Resolved(classes, samples, notes=notes)
