import warnings

import pytest
import torch

from prunekd.teachers.passt import (
    MEMBERS,
    Ensemble,
    WeightsError,
    build_mel,
    build_member,
    checkpoint_file,
    load_member,
    locate_weights,
)

ARCH = {"n_mels": 128, "embed_dim": 32, "depth": 1, "num_heads": 2}
NAMES = ["passt_s_swa_p16_128_ap476", "passt_s_p16_s12_128_ap470", "passt_s_p16_s16_128_ap468"]


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    for m in NAMES:
        torch.save(build_member(MEMBERS[m][0], ARCH, 101).state_dict(), tmp_path / checkpoint_file(m))
    return tmp_path


def test_saved_weights_load_back_through_the_real_path(weights):
    paths = locate_weights(NAMES, weights)
    for m in NAMES:
        ref = torch.load(paths[m], weights_only=True)
        model = load_member(paths[m], MEMBERS[m][0], ARCH)
        assert all(torch.equal(ref[k], v) for k, v in model.state_dict().items())


def test_a_checkpoint_lacking_a_parameter_is_refused_not_left_unset(weights):
    # Members are built without random init (parameters on the meta device): a parameter the checkpoint
    # lacks must fail the load, never reach the device uninitialised.
    p = weights / checkpoint_file(NAMES[0])
    state = torch.load(p, weights_only=True)
    del state["head.1.weight"]
    torch.save(state, p)
    with pytest.raises(WeightsError, match="head.1.weight"):
        load_member(p, 10, ARCH)
    model = load_member(weights / checkpoint_file(NAMES[1]), 12, ARCH)
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])


def test_missing_weights_error_lists_the_files(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsError) as e:
        locate_weights(NAMES, tmp_path)
    for m in NAMES:
        assert checkpoint_file(m) in str(e.value)


def test_wrong_size_is_refused(weights):
    p = weights / checkpoint_file(NAMES[0])
    with pytest.raises(WeightsError, match="expected"):
        load_member(p, 10, ARCH, expected_size=p.stat().st_size + 1)


def test_ensemble_equals_each_member_through_hear21passt_forward(weights):
    paths = locate_weights(NAMES, weights)
    members = [load_member(paths[m], MEMBERS[m][0], ARCH) for m in NAMES]
    ens = Ensemble(members).eval()
    wav = torch.randn(3, 32000) * 0.1
    out = ens(wav)
    assert out.shape == (3, 3, 527)
    mel = build_mel()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, m in enumerate(members):
            # hear21passt's own path: its mel, then its network's forward, unmodified (logits, features)
            plain = build_member(MEMBERS[NAMES[i]][0], ARCH, 101, fused_attention=False).eval()
            plain.load_state_dict(m.state_dict())
            ref, _ = plain(mel(wav).unsqueeze(1))
            torch.testing.assert_close(out[:, i], ref, rtol=1e-5, atol=1e-5)


def test_the_teacher_mel_equals_hear21passts_and_builds_its_filterbank_once(monkeypatch):
    # hear21passt rebuilds the mel filterbank on the CPU at every call and copies it to the device from pageable
    # memory (a host sync per teacher batch on a GPU); ours keeps the evaluation filterbank as a buffer.
    import contextlib
    import io

    import torchaudio
    from hear21passt.models.preprocess import AugmentMelSTFT

    with contextlib.redirect_stdout(io.StringIO()):
        plain = AugmentMelSTFT(
            n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48, timem=192, htk=False,
            fmin=0.0, fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000,
        ).eval()  # fmt: skip
    mel = build_mel()
    wav = torch.randn(2, 32000) * 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = plain(wav)

        def no_rebuild(*a, **k):
            raise AssertionError("filterbank rebuilt in an evaluation call")

        monkeypatch.setattr(torchaudio.compliance.kaldi, "get_mel_banks", no_rebuild)
        assert torch.equal(mel(wav), ref)
        assert "eval_mel_basis" in dict(mel.named_buffers())  # moves with the ensemble's .to(device)
        monkeypatch.undo()
        torch.manual_seed(1)
        aug = mel.train()(wav)  # training keeps hear21passt's band-edge augmentation
        torch.manual_seed(1)
        assert torch.equal(aug, plain.train()(wav))


def test_fp16_weights_members_take_the_fp32_mel_and_give_the_fp32_logits_to_fp16_tolerance(weights):
    # teachers.precision fp16_weights: the members cast to fp16, the mel computed in fp32 once and cast per member
    paths = locate_weights(NAMES, weights)
    ens = Ensemble([load_member(paths[m], MEMBERS[m][0], ARCH) for m in NAMES]).eval()
    wav = torch.randn(2, 32000) * 0.1
    ref = ens(wav)
    ens.members.half()
    out = ens(wav)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert {p.dtype for p in ens.members.parameters()} == {torch.float16}  # without the cast: a dtype error
    err = (out - ref).abs().max().item()
    assert 0 < err < 0.02, err  # fp16 arithmetic: not bit-equal, within fp16 rounding of the logits


def test_clips_longer_than_the_checkpoint_see_their_start(weights):
    # Checkpoints trained on 1 s (101 frames); a target with 3 s clips gives 300 frames.
    paths = locate_weights(NAMES, weights)
    longer = Ensemble([load_member(paths[m], MEMBERS[m][0], ARCH) for m in NAMES]).eval()
    exact = Ensemble([load_member(paths[m], MEMBERS[m][0], ARCH) for m in NAMES]).eval()
    wav = torch.randn(2, 3 * 32000) * 0.1
    out = longer(wav)
    # The start of the clip: as many frames as the checkpoints' positional embeddings take (about 1 s).
    frames = min(m.max_frames for m in longer.members)
    assert 101 <= frames < 130
    spec = exact.mel(wav).unsqueeze(1)[..., :frames]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torch.stack([m(spec)[0] for m in exact.members], dim=1)
    assert out.shape == (2, 3, 527) and torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


# The nine PaSST releases as hear21passt builds them (get_model: 128 x 998 input, patch 16, the member's
# stride, PaSST-S width and heads, distilled token); one block instead of twelve keeps the test fast, every
# embedding has the released shape (e.g. time_new_pos_embed [1, 768, 1, 99] at stride 10).
RELEASE = {"n_mels": 128, "embed_dim": 768, "depth": 1, "num_heads": 12}


def hear21passt_release(stride):
    import hear21passt.models.passt as passt

    passt.first_RUN = False
    return passt.PaSST(
        img_size=(128, 998),
        patch_size=16,
        stride=(stride, stride),
        in_chans=1,
        num_classes=527,
        embed_dim=768,
        depth=RELEASE["depth"],
        num_heads=12,
        distilled=True,
    )


@pytest.fixture(scope="module")
def release_weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("passt-releases")
    torch.manual_seed(0)
    for stride, _, f in MEMBERS.values():
        torch.save(hear21passt_release(stride).state_dict(), d / f)  # a plain state dict, as released
    return d


def test_release_shaped_checkpoints_give_hear21passt_logits_on_1s_and_10s_clips(release_weights):
    paths = locate_weights(list(MEMBERS), release_weights)
    assert torch.load(paths["passt_s_swa_p16_128_ap476"], weights_only=True)["time_new_pos_embed"].shape == (
        1,
        768,
        1,
        99,
    )
    members = [load_member(paths[m], MEMBERS[m][0], RELEASE) for m in MEMBERS]
    ens = Ensemble(members).eval()
    mel = build_mel()
    torch.manual_seed(1)
    for seconds in (1, 10):
        wav = torch.randn(2, seconds * 32000) * 0.1
        out = ens(wav)
        assert out.shape == (2, 9, 527) and torch.isfinite(out).all()
        # The same mel input: the ensemble cuts a 10 s clip (1000 frames) to what every member's grid takes.
        cut = min(m.max_frames for m in members)
        assert cut >= 998
        spec = mel(wav).unsqueeze(1)[..., :cut]
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, (m, (stride, _, _)) in enumerate(MEMBERS.items()):
                ref = hear21passt_release(stride).eval()
                ref.load_state_dict(torch.load(paths[m], weights_only=True))
                torch.testing.assert_close(out[:, i], ref(spec)[0], rtol=1e-4, atol=1e-4, msg=f"{m}, {seconds} s")


def test_check_teachers_names_a_checkpoint_that_does_not_load(release_weights, tmp_path, capsys):
    from prunekd.cli import main

    members = ["passt_s_swa_p16_128_ap476", "passt_s_p16_s12_128_ap470"]
    arch = '{"n_mels": 128, "embed_dim": 768, "depth": 1, "num_heads": 12}'
    main(["check-teachers", "--weights-dir", str(release_weights), "--members", *members, "--architecture", arch])
    assert capsys.readouterr().err.count("1 s and 10 s clips give finite logits") == 2
    # A truncated download under the release's name.
    f = checkpoint_file(members[1])
    (tmp_path / f).write_bytes((release_weights / f).read_bytes()[:4096])
    (tmp_path / checkpoint_file(members[0])).write_bytes((release_weights / checkpoint_file(members[0])).read_bytes())
    with pytest.raises(SystemExit, match=f"{f}: not a readable PyTorch checkpoint"):
        main(["check-teachers", "--weights-dir", str(tmp_path), "--members", *members, "--architecture", arch])


def test_a_shard_of_1s_clips_runs_in_batches_of_as_many_seconds_with_the_same_logits(weights, tmp_path):
    # `teachers.batch_size` counts 10 s clips: a batch of 32 one-second clips would leave a GPU waiting on the
    # nine members' kernel launches. The logits of a clip do not depend on the batch it is in.
    import numpy as np
    import pandas as pd
    import soundfile as sf
    import zarr

    from prunekd.teachers.logits import compute_shard

    rng = np.random.default_rng(0)
    rows = []
    for i in range(25):
        p = tmp_path / f"clip{i}.wav"
        sf.write(p, (rng.standard_normal(32000) * 0.1).astype(np.float32), 32000, subtype="PCM_16")
        rows.append({"row": i, "id": f"c{i}", "path": str(p), "status": "ok", "labels": ""})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.tsv", sep="\t", index=False)
    cfg = {"members": NAMES, "architecture": ARCH, "batch_size": 2, "precision": "fp32", "num_workers": 0}
    lines = []
    compute_shard(
        tmp_path / "manifest.tsv", "tau", 0, 100, weights, cfg, {"clip_seconds": 1}, tmp_path / "s.zarr", lines.append
    )
    assert any("batches of 20" in line for line in lines), lines
    assert [line.split(",")[0] for line in lines if "/25 clips" in line] == [
        "shard 0: 20/25 clips",
        "shard 0: 25/25 clips",
    ]
    got = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert got["row"][:].tolist() == list(range(25))
    paths = locate_weights(NAMES, weights)
    ens = Ensemble([load_member(paths[m], MEMBERS[m][0], ARCH) for m in NAMES]).eval()
    wav = torch.stack([torch.from_numpy(sf.read(r["path"], dtype="float32")[0]) for r in rows[:3]])
    np.testing.assert_allclose(got["member_logits"][:3].astype(np.float32), ens(wav).half().float().numpy(), atol=2e-3)


def _clips(tmp_path, n, seconds=1):
    import numpy as np
    import pandas as pd
    import soundfile as sf

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        p = tmp_path / f"clip{i}.wav"
        sf.write(p, (rng.standard_normal(seconds * 32000) * 0.1).astype(np.float32), 32000, subtype="PCM_16")
        rows.append({"row": i, "id": f"c{i}", "path": str(p), "status": "ok", "labels": ""})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.tsv", sep="\t", index=False)
    pd.DataFrame(columns=["row", "id", "reason"]).to_csv(tmp_path / "rejected.tsv", sep="\t", index=False)
    return rows


@pytest.mark.parametrize("embeddings", [True, False])
def test_the_store_holds_hear21passts_features_beside_the_logits_unless_turned_off(
    release_weights, tmp_path, embeddings
):
    # The teacher pass stores each member's pre-head features (hear21passt's second output) from the same forward
    # pass, rows as the logits, through shards and the gather; teachers.embeddings off stores none.
    import numpy as np
    import soundfile as sf
    import zarr

    from prunekd.teachers.logit_store import NoEmbeddingsError, embedding_features
    from prunekd.teachers.logits import compute_shard, gather

    names = ["passt_s_swa_p16_128_ap476", "passt_s_p16_s12_128_ap470"]
    rows = _clips(tmp_path, 5)
    cfg = {"members": names, "architecture": RELEASE, "batch_size": 1, "precision": "fp32", "num_workers": 0}
    cfg["embeddings"] = embeddings
    shards = [tmp_path / f"s{k}.zarr" for k in range(2)]
    for k, out in enumerate(shards):  # two shards of 3 rows: the gather streams both in row order
        compute_shard(tmp_path / "manifest.tsv", "tau", k, 3, release_weights, cfg, {"clip_seconds": 1}, out, print)
    store = tmp_path / "tau.zarr"
    gather(tmp_path / "manifest.tsv", tmp_path / "rejected.tsv", shards, "tau", cfg, release_weights, store,
           tmp_path / "r.tsv", log=lambda *_: None)  # fmt: skip
    g = zarr.open_group(str(store), mode="r")
    if not embeddings:
        assert "member_embeddings" not in g and g.attrs["embeddings"] is False
        with pytest.raises(NoEmbeddingsError, match="teachers.embeddings"):
            embedding_features(g)
        return
    got = g["member_embeddings"][:]
    assert got.shape == (5, 2, 768) and got.dtype == np.float16
    wav = torch.stack([torch.from_numpy(sf.read(r["path"], dtype="float32")[0]) for r in rows])
    spec = build_mel()(wav).unsqueeze(1)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, m in enumerate(names):
            ref = hear21passt_release(MEMBERS[m][0]).eval()
            ref.load_state_dict(torch.load(release_weights / checkpoint_file(m), weights_only=True))
            logits, features = ref(spec)
            # the logits' tolerance (float16 storage)
            np.testing.assert_allclose(g["member_logits"][:, i].astype(np.float32), logits.numpy(), atol=2e-3)
            np.testing.assert_allclose(got[:, i].astype(np.float32), features.numpy(), atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(embedding_features(g, np.array([1, 4])), got[[1, 4]].astype(np.float32).mean(1))
