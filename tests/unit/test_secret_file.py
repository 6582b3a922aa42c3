"""A credential from a file follows the file (service.secret_file): real files in tmp_path, a
mounted Kubernetes Secret rotated as kubelet does it (tests/support/secret_volume.py), and the
moments in between, when the file gives no credential and the last good one is kept."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from service import secret_file
from service.secret_file import SecretFile, current
from tests.support.secret_volume import SecretVolume

OLD, NEW = "eyJ.old-s3cret", "eyJ.new-s3cret"


def _secrets_in(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if OLD in r.getMessage() or NEW in r.getMessage()]


def test_a_rotated_secret_volume_is_followed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """kubelet's atomic swap of ..data: the path stays, the file behind it is another."""
    volume = SecretVolume(tmp_path / "fhir-token", "token", OLD)
    secret = SecretFile(volume.path, "fhir_bearer_token_file", OLD)
    assert secret.value() == OLD

    caplog.set_level(logging.INFO, logger="service.secret_file")
    volume.rotate(NEW)
    assert secret.value() == NEW == secret.value()
    [changed] = caplog.records
    assert changed.levelno == logging.INFO and "fhir_bearer_token_file" in changed.getMessage()
    assert _secrets_in(caplog.records) == []


def test_a_file_rewritten_in_place_is_followed(tmp_path: Path) -> None:
    """Not how kubelet does it, but a Docker secret or a hand-edited file: same inode, another
    size or modification time."""
    path = tmp_path / "token"
    path.write_text(f"{OLD}\n")
    secret = SecretFile(path, "stow_bearer_token_file", OLD)
    path.write_text(f"  {NEW}-longer\n")
    assert secret.value() == f"{NEW}-longer"


def test_an_unchanged_file_is_stated_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One stat per use, one read per change: the prior lookups ask for every request."""
    volume = SecretVolume(tmp_path / "prior-token", "token", OLD)
    secret = SecretFile(volume.path, "prior_dicomweb_bearer_token_file", OLD)
    reads: list[Path] = []
    monkeypatch.setattr(secret_file, "read_secret", lambda path, setting: reads.append(path) or path.read_text())
    assert [secret.value() for _ in range(5)] == [OLD] * 5 and len(reads) == 1
    volume.rotate(NEW)
    assert [secret.value() for _ in range(5)] == [NEW] * 5 and len(reads) == 2


@pytest.mark.parametrize("midway", ["", " \n", b"\xff\xfe not UTF-8", None],
                         ids=["empty", "blank", "not UTF-8", "missing"])
def test_a_rotation_caught_midway_keeps_the_last_good_credential(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, midway: str | bytes | None) -> None:
    """The file empty (a Secret being edited), blank, unreadable or gone for a moment: the
    credential read before is sent, with one WARNING for the whole moment (not one per use)
    naming the setting and the file, never a credential; the next good content ends it, and a
    later moment warns again."""
    volume = SecretVolume(tmp_path / "stow-basic-auth", "basic-auth", OLD)
    secret = SecretFile(volume.path, "stow_basic_auth_file", OLD)
    caplog.set_level(logging.INFO, logger="service.secret_file")

    if midway is None:
        volume.path.unlink()
    else:
        volume.rotate(midway)
    assert [secret.value() for _ in range(3)] == [OLD] * 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "stow_basic_auth_file" in warnings[0].getMessage()
    assert str(volume.path) in warnings[0].getMessage()

    if midway is None:
        volume.path.symlink_to(Path("..data") / volume.key)
    volume.rotate(NEW)
    assert secret.value() == NEW
    volume.rotate("")
    assert secret.value() == NEW
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    assert _secrets_in(caplog.records) == []


def test_threads_sharing_one_see_the_old_or_the_new_credential_never_another(tmp_path: Path) -> None:
    """The prior lookups' threads share one client, which asks for the credential per request."""
    volume = SecretVolume(tmp_path / "prior-token", "token", OLD)
    secret = SecretFile(volume.path, "prior_dicomweb_bearer_token_file", OLD)
    seen: set[str] = set()
    stop = threading.Event()

    def use() -> None:
        while not stop.is_set():
            seen.add(secret.value())

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for content in (NEW, OLD, NEW, "", NEW):
        volume.rotate(content)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    assert seen <= {OLD, NEW} and secret.value() == NEW


def test_neither_repr_nor_current_of_a_given_credential_reveal_more_than_asked(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(OLD)
    secret = SecretFile(path, "fhir_bearer_token_file", OLD)
    assert OLD not in repr(secret) and "fhir_bearer_token_file" in repr(secret)
    assert (current(secret), current("given in the configuration")) == (OLD, "given in the configuration")
