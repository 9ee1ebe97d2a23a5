"""Speakers: official spk_dict.pt (safe loading), our safetensors + JSON format, clear errors."""

import pytest
import torch

from omni_hf import Speaker, SpeakerBank


def _official(path, **extra):
    speakers = {
        "Chelsie": {"bos_token": 1014, "cond": torch.randn(1, 24), "ref_mel": torch.randn(1, 40, 80)},
        "Ethan": {"bos_token": torch.tensor(1015), "cond": torch.randn(1, 24), "ref_mel": torch.randn(1, 30, 80)},
    }
    speakers.update(extra)
    torch.save(speakers, path)
    return speakers


class _Payload:  # a pickled object that needs code execution to load
    def __reduce__(self):
        return (print, ("pwned",))


def test_official_file_loads_lists_and_round_trips(tmp_path):
    raw = _official(tmp_path / "spk_dict.pt")
    bank = SpeakerBank.from_official(tmp_path / "spk_dict.pt")
    assert bank.names() == ["Chelsie", "Ethan"]
    assert bank["Ethan"].bos_token_id == 1015
    torch.testing.assert_close(bank["Chelsie"].reference_mel, raw["Chelsie"]["ref_mel"])
    bank.save(tmp_path / "ours")
    assert (tmp_path / "ours" / "speakers.safetensors").exists() and (tmp_path / "ours" / "speakers.json").exists()
    again = SpeakerBank.load(tmp_path / "ours")
    assert again.names() == bank.names()
    for name in bank:
        torch.testing.assert_close(again[name].speaker_embedding, bank[name].speaker_embedding)
        torch.testing.assert_close(again[name].reference_mel, bank[name].reference_mel)
        assert again[name].bos_token_id == bank[name].bos_token_id


def test_unknown_speaker_lists_known(tmp_path):
    _official(tmp_path / "spk_dict.pt")
    bank = SpeakerBank.from_official(tmp_path / "spk_dict.pt")
    with pytest.raises(ValueError, match="Unknown speaker 'Nobody'; known speakers: Chelsie, Ethan"):
        bank["Nobody"]


def test_bad_speaker_files_are_refused_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SpeakerBank.from_official(tmp_path / "missing.pt")
    torch.save({"Chelsie": {"bos_token": 1, "cond": torch.randn(1, 4)}}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="needs 'bos_token', 'cond' and 'ref_mel'"):
        SpeakerBank.from_official(tmp_path / "partial.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable spk_dict.pt"):
        SpeakerBank.from_official(tmp_path / "garbage.pt")
    torch.save({"Chelsie": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="Refusing to load"):
        SpeakerBank.from_official(tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="reference_mel must have shape"):  # the official ref_mel, renamed
        Speaker("x", 1, torch.randn(1, 4), torch.randn(2, 3, 80))


def test_adding_a_speaker_never_overwrites_silently():
    bank = SpeakerBank()
    bank.add(Speaker("Ada", 7, torch.randn(1, 4), torch.randn(1, 5, 80)))
    with pytest.raises(ValueError, match="exists already"):
        bank.add(Speaker("Ada", 8, torch.randn(1, 4), torch.randn(1, 5, 80)))
    bank.add(Speaker("Ada", 8, torch.randn(1, 4), torch.randn(1, 5, 80)), overwrite=True)
    assert bank["Ada"].bos_token_id == 8
