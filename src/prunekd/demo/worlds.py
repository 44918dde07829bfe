"""Synthetic demo data in the real on-disk formats of AudioSet and TAU Urban Acoustic Scenes 2022 Mobile.

The sounds give the method something to find: the AudioSet-format pool mixes event classes that
occur in the scenes with many that never do; scenes are mixtures of the scene events over a
background; recording devices differ audibly (filtering, gain, noise). Everything is deterministic
from the seed.

Three worlds (config demo.world). `tour`, the tests': a scene is told by its background as much as by its
events. `known_answer` (docs/known-answer.md): a scene is told by its sound events only (each scene always
holds its own pair of the scene events, over a background drawn at random), so that what the teachers know of
those events is what a student can gain from them. `graded` (docs/selections.md, "The graded world"): the
known-answer world's target, and a pool that also holds clips which look like the target and teach nothing,
and clips that are partly useful, so that selection methods can differ. Every world writes down how useful
each AudioSet-format clip is (truth.tsv beside the segment lists): the ground truth of the known-answer and
selection reports, which the pipeline itself never reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from prunekd.data.manifest import SCENES  # the challenge's ten scene labels, as the manifest knows them
from prunekd.teachers.logit_store import N_CLASSES

N_EVENTS = 24  # event types that actually sound; the other classes never occur
SCENE_EVENTS = list(range(8))  # events 0..7 occur in the scenes, 8..23 never do
TRAIN_DEVICES = ["a", "b", "c", "s1", "s2", "s3"]
TEST_DEVICES = TRAIN_DEVICES + ["s4", "s5", "s6"]
CITIES = ["barcelona", "helsinki", "lisbon", "london", "lyon", "milan", "paris", "prague", "stockholm", "vienna"]
EVENT_NAMES = [
    "Vehicle engine",
    "Car horn",
    "Footsteps",
    "Chatter",
    "Brake squeal",
    "Bird chirp",
    "Rail transport",
    "Announcement chime",
    "Violin",
    "Piano",
    "Dog",
    "Cat",
    "Drum",
    "Flute",
    "Guitar",
    "Thunder",
    "Water tap",
    "Keyboard typing",
    "Clock tick",
    "Choir",
    "Synthesizer",
    "Bell",
    "Whistle",
    "Frog",
]


def _event(kind: int, rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """One sound event of type `kind`, placed at a random offset in an n-sample clip."""
    t = np.arange(n) / sr
    f0 = 110.0 * 2 ** (kind / 4.0)  # each type has its own pitch region
    shape = kind % 6
    jitter = rng.uniform(0.9, 1.1)
    if shape == 0:  # harmonic tone
        x = sum(np.sin(2 * np.pi * f0 * jitter * h * t) / h for h in range(1, 5))
    elif shape == 1:  # chirp
        x = np.sin(2 * np.pi * (f0 * jitter * t + 0.5 * f0 * 3 * t**2))
    elif shape == 2:  # click train
        x = np.zeros(n)
        period = max(1, int(sr / (4 + kind % 5 * 3)))
        x[::period] = 1.0
        x = np.convolve(x, np.exp(-np.arange(200) / 30.0), mode="same")
    elif shape == 3:  # band of noise around f0
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / sr)
        spec *= np.exp(-0.5 * ((f - f0 * 4 * jitter) / (f0 * 0.5)) ** 2)
        x = np.fft.irfft(spec, n)
    elif shape == 4:  # amplitude-modulated tone (siren-like)
        x = np.sin(2 * np.pi * f0 * 2 * jitter * t + 3 * np.sin(2 * np.pi * 3 * t))
    else:  # decaying bell partials
        x = sum(np.sin(2 * np.pi * f0 * jitter * r * t) for r in (1.0, 2.76, 5.4)) * np.exp(-4 * t)
    x = x / (np.max(np.abs(x)) + 1e-9)
    # Random on/off envelope: the event fills part of the clip.
    length = int(n * rng.uniform(0.4, 1.0))
    start = rng.integers(0, n - length + 1)
    env = np.zeros(n)
    env[start : start + length] = np.hanning(length) ** 0.3
    return x * env * rng.uniform(0.3, 0.8)


def _background(scene: int, rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Coloured noise whose spectral tilt and low-pass depend on the scene."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr) + 1.0
    tilt = -0.3 - 0.12 * scene
    cutoff = 1500.0 + 700.0 * ((scene * 7) % 10)
    spec *= f**tilt / (1 + (f / cutoff) ** 4)
    x = np.fft.irfft(spec, n)
    return 0.2 * x / (np.std(x) + 1e-9)


# known_answer world: each scene's pair of scene events, every pair different (a scene is its events).
SCENE_PAIRS = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5)]
WORLDS = ("tour", "known_answer", "graded")
TRUTH_FILE = "truth.tsv"  # beside the segment lists: id, subset, target_like (1: carries the scenes' kinds)
# graded world: each pool clip's kind and how useful it is to the target (truth.tsv's target_like; `kind` beside
# it). Fixed before any selection method was measured on it (docs/selections.md, "The graded world").
GRADED_TRUTH = {"target_like": 1.0, "partial": 0.5, "look_alike": 0.0, "unrelated": 0.0}


def _scene_event_weights(scene: int) -> np.ndarray:
    w = np.full(len(SCENE_EVENTS), 0.2)
    w[scene % len(SCENE_EVENTS)] += 2.0
    w[(scene * 3 + 1) % len(SCENE_EVENTS)] += 1.0
    return w / w.sum()


def _device(x: np.ndarray, device: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Recording device: its own frequency response, gain and noise floor."""
    idx = TEST_DEVICES.index(device)
    n = len(x)
    f = np.fft.rfftfreq(n, 1 / sr)
    if device == "a":
        resp = np.ones_like(f)
    else:
        lo = 50.0 + 120.0 * idx
        hi = 16000.0 - 1500.0 * idx
        resp = (f / (f + lo)) / (1 + (f / hi) ** 2) * (1 + 0.5 * np.sin(f / (800.0 + 300 * idx)))
    y = np.fft.irfft(np.fft.rfft(x) * resp, n) * (1.0 - 0.06 * idx)
    y += rng.standard_normal(n) * 0.003 * idx
    return y


def _recording_chain(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One clip's recording chain in the known-answer world's pool: AudioSet's clips come from countless devices,
    so each clip gets its own high-pass, low-pass, ripple, gain and noise floor, spanning what the target's
    devices do (_device); a quarter of the clips stay as they sound. Teachers trained on such a pool know the
    events through any device, as PaSST trained on AudioSet does."""
    if rng.random() < 0.25:
        return x
    n, f = len(x), np.fft.rfftfreq(len(x), 1 / sr)
    lo, hi = rng.uniform(20.0, 1100.0), rng.uniform(3500.0, 16000.0)
    resp = (f / (f + lo)) / (1 + (f / hi) ** 2) * (1 + rng.uniform(0.0, 0.5) * np.sin(f / rng.uniform(500.0, 3500.0)))
    y = np.fft.irfft(np.fft.rfft(x) * resp, n) * rng.uniform(0.5, 1.0)
    return y + rng.standard_normal(n) * rng.uniform(0.0, 0.03)


def _graded_clip(rng: np.random.Generator, sr: int, n: int, share: float) -> tuple[np.ndarray, list[int], str]:
    """(audio, events, kind) of one pool clip of the graded world; each special kind is `share` of the pool.

    target_like: one or two of the scenes' events over a scene's background, through a clip's own recording chain
    (today's known-answer clips). look_alike: recorded as the target is (a scene's background, one of the
    target's training devices) but carrying only unrelated events: close to the target in what a recording
    sounds like, useless for telling its scenes apart. partial: one of the scenes' events among one or two
    unrelated ones, no scene background, its own recording chain. unrelated: unrelated events only."""
    unrelated = list(range(len(SCENE_EVENTS), N_EVENTS))
    u = rng.random()
    kind = (
        "target_like" if u < share else "look_alike" if u < 2 * share else "partial" if u < 3 * share else "unrelated"
    )
    if kind == "target_like":
        events = sorted(set(rng.choice(SCENE_EVENTS, size=int(rng.integers(1, 3))).tolist()))
    elif kind == "partial":
        events = sorted({int(rng.choice(SCENE_EVENTS)), *rng.choice(unrelated, size=int(rng.integers(1, 3))).tolist()})
    else:
        events = sorted(set(rng.choice(unrelated, size=int(rng.integers(1, 3))).tolist()))
    x = sum(_event(e, rng, sr, n) for e in events)
    if kind in ("target_like", "look_alike"):
        x = x + _background(int(rng.integers(0, len(SCENES))), rng, sr, n)
    if kind == "look_alike":
        return _device(x, TRAIN_DEVICES[int(rng.integers(0, len(TRAIN_DEVICES)))], sr, rng), events, kind
    return _recording_chain(x, sr, rng), events, kind


def _write(path: Path, x: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.clip(x, -1.0, 1.0)
    sf.write(str(path), x.astype(np.float32), sr, subtype="PCM_16")


def make_audioset(
    root: Path,
    counts: dict,
    clip_seconds: float,
    sr: int,
    scene_share: float,
    rng: np.random.Generator,
    world: str = "tour",
) -> None:
    """Segment lists with the real header lines and quoting, class_labels_indices.csv, one file per segment.

    Also writes TRUTH_FILE: which clips carry the scene events (the known-answer report's ground truth); in the
    graded world how useful each clip is and its kind (GRADED_TRUTH). In the known_answer world every clip passes
    its own recording chain (_recording_chain); in the graded world see _graded_clip."""
    mids = [f"/m/demo{i:03d}" for i in range(N_CLASSES)]
    names = EVENT_NAMES + [f"Unused class {i}" for i in range(N_EVENTS, N_CLASSES)]
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "class_labels_indices.csv", "w") as fh:
        fh.write("index,mid,display_name\n")
        for i, (m, nm) in enumerate(zip(mids, names)):
            fh.write(f'{i},{m},"{nm}"\n')
    n = int(round(clip_seconds * sr))
    serial = 0
    graded = world == "graded"
    truth = ["id\tsubset\ttarget_like" + ("\tkind" if graded else "")]
    for subset, count in counts.items():
        lines = [
            "# Segments csv created demo by prunekd",
            f"# num_ytids={count}, num_segs={count}, num_unique_labels={N_EVENTS}, num_positive_labels=0",
            "# YTID, start_seconds, end_seconds, positive_labels",
        ]
        for _ in range(count):
            serial += 1
            ytid = f"demo{serial:07d}"[:11]
            start = float(rng.integers(0, 30))
            if graded:
                x, events, kind = _graded_clip(rng, sr, n, scene_share)
                _write(root / "audio" / subset / f"{ytid}.wav", x, sr)
                lines.append(f'{ytid}, {start:.3f}, {start + 10:.3f}, "{",".join(mids[e] for e in events)}"')
                truth.append(f"{ytid}\t{subset}\t{GRADED_TRUTH[kind]:g}\t{kind}")
                continue
            sceney = rng.random() < scene_share
            pool = SCENE_EVENTS if sceney else list(range(len(SCENE_EVENTS), N_EVENTS))
            k = int(rng.integers(1, 3))
            events = sorted(set(rng.choice(pool, size=k).tolist()))
            x = sum(_event(e, rng, sr, n) for e in events)
            if sceney:  # scene-like clips also carry a street/indoor background
                x = x + _background(int(rng.integers(0, len(SCENES))), rng, sr, n)
            if world == "known_answer":
                x = _recording_chain(x, sr, rng)
            _write(root / "audio" / subset / f"{ytid}.wav", x, sr)
            labels = ",".join(mids[e] for e in events)
            lines.append(f'{ytid}, {start:.3f}, {start + 10:.3f}, "{labels}"')
            truth.append(f"{ytid}\t{subset}\t{int(sceney)}")
        (root / f"{subset}_segments.csv").write_text("\n".join(lines) + "\n")
    (root / TRUTH_FILE).write_text("\n".join(truth) + "\n")


def make_tau(
    root: Path,
    n_train: int,
    n_test: int,
    sr: int,
    rng: np.random.Generator,
    world: str = "tour",
    seconds: float = 1.0,
) -> None:
    """meta.csv, split5..split100.csv, test.csv (tab-separated) and audio/*.wav at 44.1 kHz, 1 s (`seconds`).

    world `tour`: the scene's background and one or two events drawn by its weights; `known_answer` and `graded`:
    the scene's own pair of events (SCENE_PAIRS) over the background of a scene drawn at random."""
    if world not in WORLDS:
        raise ValueError(f"demo.world: {world!r} is not one of {', '.join(WORLDS)}")
    n = int(round(sr * seconds))
    rows, seen = [], set()

    def clip(i: int, devices: list[str]):
        scene = i % len(SCENES)
        city = CITIES[(i // len(SCENES)) % len(CITIES)]
        loc = 1000 + (i // (len(SCENES) * len(CITIES))) % 7
        device = devices[int(rng.integers(0, len(devices)))]
        name = f"audio/{SCENES[scene]}-{city}-{loc}-{i * 10}-{i % 10}-{device}.wav"
        assert name not in seen
        seen.add(name)
        if world in ("known_answer", "graded"):  # the events tell the scene; the background is noise
            x = _background(int(rng.integers(0, len(SCENES))), rng, sr, n)
            events = SCENE_PAIRS[scene]
        else:
            x = _background(scene, rng, sr, n)
            events = rng.choice(SCENE_EVENTS, size=int(rng.integers(1, 3)), p=_scene_event_weights(scene))
        for e in events:
            x = x + _event(int(e), rng, sr, n)
        _write(root / name, _device(x, device, sr, rng), sr)
        rows.append((name, SCENES[scene], f"{city}-{loc}", device))
        return name, SCENES[scene]

    train = [clip(i, TRAIN_DEVICES) for i in range(n_train)]
    test = [clip(n_train + i, TEST_DEVICES) for i in range(n_test)]
    with open(root / "meta.csv", "w") as fh:
        fh.write("filename\tscene_label\tidentifier\tsource_label\n")
        for r in rows:
            fh.write("\t".join(r) + "\n")
    # Nested splits, as in the challenge: split5 is part of split10, and so on.
    order = rng.permutation(len(train))
    for pct in (5, 10, 25, 50, 100):
        k = max(len(SCENES), int(round(len(train) * pct / 100)))
        chosen = sorted(order[:k])
        with open(root / f"split{pct}.csv", "w") as fh:
            fh.write("filename\tscene_label\n")
            for j in chosen:
                fh.write(f"{train[j][0]}\t{train[j][1]}\n")
    with open(root / "test.csv", "w") as fh:
        fh.write("filename\n")
        for name, _ in test:
            fh.write(f"{name}\n")


def make_tau_evaluation(root: Path, n: int, sr: int, seed: int, world: str = "tour", seconds: float = 1.0) -> None:
    """An evaluation set in the TAU 2024 evaluation layout (TAU-urban-acoustic-scenes-2024-mobile-evaluation):
    `meta.csv`, tab-separated, with only `filename`, and `audio/<i>.wav` (i = 0 ... n-1), scenes and devices as in
    the test split, no labels. Clip n // 2 is silent (all-zero samples): a legal clip that gets a row like any
    other. Its own generator (seeded from `seed`), so that the other demo data stays as it was."""
    if world not in WORLDS:
        raise ValueError(f"demo.world: {world!r} is not one of {', '.join(WORLDS)}")
    rng = np.random.default_rng([seed, 2024])
    k = int(round(sr * seconds))
    (root / "audio").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        scene = int(rng.integers(0, len(SCENES)))
        device = TEST_DEVICES[int(rng.integers(0, len(TEST_DEVICES)))]
        if i == n // 2:
            x = np.zeros(k)
        elif world in ("known_answer", "graded"):
            x = _background(int(rng.integers(0, len(SCENES))), rng, sr, k)
            x = x + sum(_event(int(e), rng, sr, k) for e in SCENE_PAIRS[scene])
            x = _device(x, device, sr, rng)
        else:
            x = _background(scene, rng, sr, k)
            events = rng.choice(SCENE_EVENTS, size=int(rng.integers(1, 3)), p=_scene_event_weights(scene))
            x = _device(x + sum(_event(int(e), rng, sr, k) for e in events), device, sr, rng)
        _write(root / f"audio/{i}.wav", x, sr)
    (root / "meta.csv").write_text("filename\n" + "".join(f"audio/{i}.wav\n" for i in range(n)))


BAD_KINDS = ("missing", "empty", "silent", "unreadable", "non-finite samples")


def damage_clips(audio_dir: Path, k: int) -> list[tuple[str, str]]:
    """Damage the last k clips of a folder the ways real copies go bad (one kind after another), so the
    demo shows them skipped and listed. Returns (clip id, expected reason)."""
    out = []
    for i, path in enumerate(sorted(audio_dir.glob("*.wav"))[-k:] if k else []):
        kind = BAD_KINDS[i % len(BAD_KINDS)]
        sr = sf.info(str(path)).samplerate
        if kind == "missing":
            path.unlink()
        elif kind == "empty":
            sf.write(str(path), np.zeros(0, np.float32), sr, subtype="PCM_16")
        elif kind == "silent":
            sf.write(str(path), np.zeros(sr, np.float32), sr, subtype="PCM_16")
        elif kind == "unreadable":
            path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
        else:
            x = np.zeros(sr, np.float32)
            x[::7] = np.nan
            sf.write(str(path), x, sr, subtype="FLOAT")
        out.append((path.stem, kind))
    return out


SOUND_CLASSES = ["chirps", "clicks", "hum", "bells", "sirens"]
GROUPS = ["near", "far"]


def make_csv_target(
    csv_path: Path, n_train: int, n_test: int, rng: np.random.Generator, sr: int = 16000, seconds: float = 2.0
) -> None:
    """A generic target in the CSV layout: 2 s FLAC clips at 16 kHz of five sound classes (each dominated by
    a different scene event over a street background), heard from two distances (the `device` column)."""
    root = csv_path.parent
    n = int(sr * seconds)
    lines = ["filename,label,device,split"]
    for i in range(n_train + n_test):
        c = i % len(SOUND_CLASSES)
        group = GROUPS[int(rng.integers(0, len(GROUPS)))]
        x = _background(int(rng.integers(0, len(SCENES))), rng, sr, n) * 0.5
        for _ in range(int(rng.integers(1, 3))):
            x = x + _event(SCENE_EVENTS[(c * 3 + 2) % len(SCENE_EVENTS)], rng, sr, n)
        if group == "far":  # distance: quieter, duller, noisier
            x = np.convolve(x, np.ones(8) / 8, mode="same") * 0.5 + rng.standard_normal(n) * 0.01
        name = f"clips/{SOUND_CLASSES[c]}_{i:04d}.flac"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), np.clip(x, -1, 1).astype(np.float32), sr, format="FLAC", subtype="PCM_16")
        lines.append(f"{name},{SOUND_CLASSES[c]},{group},{'train' if i < n_train else 'test'}")
    csv_path.write_text("\n".join(lines) + "\n")


def make_demo_data(audioset_root, tau_roots, cfg: dict, csv_targets=(), eval_roots=()) -> None:
    """Write the demo's data, only into folders that are absent, empty or the demo's own (checks.DEMO_MARKER):
    pointed at a user's folder by mistake, it stops before writing anything. `eval_roots`: folders that get
    `cfg["evaluation_clips"]` clips in the TAU 2024 evaluation layout each (make_tau_evaluation)."""
    from prunekd.dag.checks import check_demo_folders, claim_demo_folder

    tau_roots = [tau_roots] if isinstance(tau_roots, (str, Path)) else list(tau_roots)
    folders = [
        ("paths.audioset", audioset_root),
        *[("targets.<name>.root", r) for r in tau_roots],
        *[("targets.<name>.csv", Path(c).parent) for c in csv_targets],
        *[("targets.<name>.evaluation.root", r) for r in eval_roots],
    ]
    check_demo_folders(folders)  # every folder first: nothing is written if one is refused
    for key, folder in folders:
        claim_demo_folder(folder, key)
    rng = np.random.default_rng(cfg["seed"])
    make_audioset(
        Path(audioset_root),
        cfg["audioset_clips"],
        cfg["audioset_clip_seconds"],
        cfg["audioset_sample_rate"],
        cfg["scene_share"],
        rng,
        cfg.get("world", "tour"),
    )
    damage_clips(Path(audioset_root) / "audio" / "unbalanced_train", cfg.get("bad_clips", 0))
    for root in tau_roots:
        make_tau(
            Path(root),
            cfg["tau_train_clips"],
            cfg["tau_test_clips"],
            44100,
            rng,
            cfg.get("world", "tour"),
            cfg.get("tau_clip_seconds", 1.0),
        )
    for csv_path in csv_targets:
        clips = cfg.get("csv_target_clips", {"train": 120, "test": 80})
        make_csv_target(Path(csv_path), clips["train"], clips["test"], rng)
    for root in eval_roots:
        make_tau_evaluation(
            Path(root),
            cfg["evaluation_clips"],
            44100,
            cfg["seed"],
            cfg.get("world", "tour"),
            cfg.get("tau_clip_seconds", 1.0),
        )


def demo_data_step(audioset_root, tau_roots, csv_targets, settings: dict, eval_roots=(), log=print) -> None:
    """`prunekd demo-data`."""
    make_demo_data(audioset_root, tau_roots, settings, csv_targets, eval_roots)
    log(f"demo data written to {', '.join([audioset_root, *tau_roots, *csv_targets, *eval_roots])}")
