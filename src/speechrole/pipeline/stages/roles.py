"""From speakers to roles: assign segments to roles, then choose each role's reference clip.

Roles come from the pipeline's `roles:` section: `mode: manual` (a map from `SOURCE:SPEAKER` to role),
`mode: enrol` (a few clips per role; each diarized speaker goes to the nearest role centroid above a
threshold), or `mode: cluster` (speakers across all sources clustered; each cluster becomes a role
named `speaker_N`, to be renamed by a person).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from speechrole.pipeline.stage import Context, Row, Stage, drop, register
from speechrole.pipeline.stages.audio import (
    ANALYSIS_RATE,
    SPEAKER_ENCODER,
    _Encoder,
    cluster,
    cosine,
    mono_at,
)
from speechrole.problems import DataError


def role_list(ctx: Context) -> list[dict[str, Any]]:
    roles = (ctx.config.get("roles") or {}).get("list") or []
    if not isinstance(roles, list) or not all(isinstance(r, dict) and "id" in r for r in roles):
        raise DataError(
            ctx.config.get("base_dir", ""), "roles.list", "expected a list of {id, name, work, persona, ...}"
        )
    return roles


def _unit(vector: list[float]) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64)
    return v / (np.linalg.norm(v) + 1e-12)


@register
class AssignRoles(Stage):
    """Assign each diarized speaker's segments to a role (manual map, enrolment clips, or clustering)."""

    name = "assign_roles"
    known = frozenset({"mode", "threshold"})
    uses = frozenset({"roles", SPEAKER_ENCODER})
    per = "all"
    reads = frozenset({"speaker", "embedding"})
    writes = frozenset({"role", "role_score"})

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.config = ctx.config.get("roles") or {}
        self.mode = self.options.get("mode", self.config.get("mode", "enrol"))
        if self.mode not in ("manual", "enrol", "cluster"):
            raise ValueError(f"roles.mode {self.mode!r}: use manual, enrol or cluster")

    def _centroids(self) -> dict[str, np.ndarray]:
        encode = _Encoder(self.ctx.config)
        base = Path(self.ctx.config.get("base_dir", "."))
        out = {}
        for role in role_list(self.ctx):
            clips = role.get("enrol") or []
            if not clips:
                raise DataError(
                    base, f"roles.list[{role['id']}].enrol", "enrol mode needs clips of each role"
                )
            vectors = [encode(mono_at(base / c, ANALYSIS_RATE)) for c in clips]
            mean = np.mean(vectors, axis=0)
            out[str(role["id"])] = mean / np.linalg.norm(mean)
        return out

    def process_batch(self, rows: list[Row]) -> list[Row]:
        speakers: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            speakers[row["speaker"]].append(row)
        means = {s: np.mean([r["embedding"] for r in rs], axis=0) for s, rs in speakers.items()}
        decided: dict[str, tuple[str | None, float, str]] = {}  # speaker -> (role, score, why not)
        if self.mode == "manual":  # keys: SOURCE_ID:LABEL, or the media file's name:LABEL
            mapping = self.config.get("map") or {}
            for s, members in speakers.items():
                label = s.rsplit(":", 1)[-1]
                named = f"{Path(members[0].get('media_path', '')).name}:{label}"
                role = mapping.get(s) or mapping.get(named)
                decided[s] = (role, 1.0, f"no role mapped for {named} ({s})")
        elif self.mode == "enrol":
            threshold = float(self.options.get("threshold", self.config.get("threshold", 0.7)))
            centroids = self._centroids()
            for s, mean in means.items():
                scores = {role: cosine(mean, c) for role, c in centroids.items()}
                best = max(scores, key=scores.__getitem__)
                ok = scores[best] >= threshold
                decided[s] = (
                    best if ok else None,
                    scores[best],
                    f"nearest role {best} at {scores[best]:.2f} < {threshold:g}",
                )
        else:
            names = list(means)
            labels = cluster(np.stack([means[s] for s in names]), float(self.options.get("threshold", 0.4)))
            for s, label in zip(names, labels, strict=True):
                decided[s] = (f"speaker_{label}", 1.0, "")
        out = []
        for row in rows:
            role, score, why = decided[row["speaker"]]
            out.append(
                {**row, "role": role, "role_score": round(score, 4)} if role else drop(row, f"no role: {why}")
            )
        return out


@register
class SelectReference(Stage):
    """Each role's reference clip: within a duration window, clean, one speaker throughout, and most
    typical of the role (the medoid of its segments); the top-k candidates are kept for retries."""

    name = "select_reference"
    known = frozenset({"duration_s", "single_speaker_min", "top_k", "excerpts", "min_ovrl"})
    uses = frozenset({"roles", SPEAKER_ENCODER})
    per = "all"
    reads = frozenset({"role", "duration", "embedding", "audio_path", "text", "language", "dnsmos"})
    writes = frozenset(
        {
            "id",
            "role",
            "language",
            "ref_audio_path",
            "ref_text",
            "ref_duration",
            "medoid_score",
            "candidates",
            "excerpts",
            "profile",
        }
    )
    keeps = False

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.encode = _Encoder(ctx.config)

    def _single_speaker(self, row: Row) -> float:
        audio = mono_at(Path(row["audio_path"]), ANALYSIS_RATE)
        half = len(audio) // 2
        return cosine(self.encode(audio[:half]), self.encode(audio[half:]))

    def process_batch(self, rows: list[Row]) -> list[Row]:
        lo, hi = self.options.get("duration_s", (3.0, 12.0))
        min_same = float(self.options.get("single_speaker_min", 0.7))
        top_k = int(self.options.get("top_k", 3))
        profiles = {str(r["id"]): r for r in role_list(self.ctx)}
        by_role: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            by_role[row["role"]].append(row)
        out = []
        min_ovrl = float(self.options.get("min_ovrl", 0.0))
        for role, segs in sorted(by_role.items()):
            # the medoid under cosine similarity: a clip's mean similarity to all of the role's clips
            # is its (unit) embedding times the mean embedding, so rank by that
            unit = {s["id"]: _unit(s["embedding"]) for s in segs}
            centroid = np.mean(list(unit.values()), axis=0)
            fits = [
                s
                for s in segs
                if lo <= s["duration"] <= hi and float((s.get("dnsmos") or {}).get("ovrl", 5.0)) >= min_ovrl
            ]
            ranked = sorted(
                fits,
                key=lambda s: (
                    -float(unit[s["id"]] @ centroid),
                    -(s.get("dnsmos") or {}).get("ovrl", 0),
                    s["id"],
                ),
            )
            chosen: list[Row] = []
            for s in ranked:  # the single-speaker check is costly: stop at top-k
                if len(chosen) == top_k:
                    break
                if self._single_speaker(s) >= min_same:
                    chosen.append(s)
            sources = sorted({s["id"] for s in segs})
            if not chosen:
                out.append(
                    {
                        "id": role,
                        "_drop": f"no reference clip: none of {len(segs)} segments fits {lo:g}-{hi:g} s and one speaker",
                        "_src": sources[0],
                    }
                )
                continue
            best = chosen[0]
            profile = profiles.get(role, {"id": role, "name": role, "work": "", "persona": ""})
            out.append(
                {
                    "id": role,
                    "_src": sources[0],
                    "role": role,
                    "language": best["language"],
                    "ref_audio_path": best["audio_path"],
                    "ref_text": best["text"],
                    "ref_duration": best["duration"],
                    "medoid_score": round(float(unit[best["id"]] @ centroid), 4),
                    "candidates": [{"audio_path": s["audio_path"], "text": s["text"]} for s in chosen],
                    "excerpts": [s["text"] for s in sorted(segs, key=lambda s: s["id"])][
                        : int(self.options.get("excerpts", 12))
                    ],
                    "profile": {k: profile.get(k, "") for k in ("id", "name", "work", "persona")},
                }
            )
        return out
