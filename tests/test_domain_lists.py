"""official:<name> domain lists: downloaded at a pinned commit, verified, cached; our lists named honestly."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from test_download import Served, closed_url

from hyperdomainnet.errors import ConfigError, DownloadError
from hyperdomainnet.hypernet import domains
from hyperdomainnet.hypernet.domains import BUILTIN_LISTS, load_domain_list

TEXT = "Anime Painting - Photo\nPhoto - Photo\nZombie - Human\n"


@pytest.fixture
def official(server: Served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A list 'toy' registered like the research code's (its hash), served by a local 'GitHub'."""
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "hdn"))
    monkeypatch.setitem(domains.OFFICIAL_LISTS, "toy", hashlib.sha256(TEXT.encode()).hexdigest())
    monkeypatch.setattr(domains, "OFFICIAL_URL", server.url + "/{commit}/text_domains/{name}.txt")
    server.add(f"/{domains.OFFICIAL_COMMIT}/text_domains/toy.txt", TEXT.encode())
    return tmp_path / "hdn" / "domain_lists" / "toy.txt"


def test_our_lists_do_not_claim_to_be_the_papers() -> None:
    for name, description in BUILTIN_LISTS.items():
        assert description.startswith("our "), name
    assert "not the paper's" in BUILTIN_LISTS["train-20"] and "official:domain_list_20" in BUILTIN_LISTS["train-20"]


def test_every_research_list_is_registered_with_a_hash() -> None:
    assert {"domain_list_20", "train_domains_2000", "close_test_domains_2000",
            "far_test_domains_2000"} <= set(domains.OFFICIAL_LISTS)
    assert len(domains.OFFICIAL_LISTS) == 16
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in domains.OFFICIAL_LISTS.values())
    assert re.fullmatch(r"[0-9a-f]{40}", domains.OFFICIAL_COMMIT)


def test_official_list_is_downloaded_verified_and_cached(official: Path, server: Served) -> None:
    with pytest.warns(UserWarning, match="official:toy: dropped 1 line"):  # 'Photo - Photo'
        dl = load_domain_list("official:toy")
    assert dl.name == "official:toy" and dl.targets == ["Anime Painting", "Zombie"]
    assert official.read_text() == TEXT
    server.files.clear()  # cached: no network needed
    with pytest.warns(UserWarning):
        assert load_domain_list("official:toy") == dl


def test_wrong_bytes_are_refused_and_not_cached(official: Path, server: Served) -> None:
    server.add(f"/{domains.OFFICIAL_COMMIT}/text_domains/toy.txt", b"Anime - Photo\n")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        load_domain_list("official:toy")
    assert not official.exists()


def test_offline_says_where_to_place_the_file(official: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_url()
    monkeypatch.setattr(domains, "OFFICIAL_URL", url)
    with pytest.raises(DownloadError) as err:
        load_domain_list("official:toy")
    assert str(err.value).endswith(f"download it yourself from {url} and place it at {official}")
    official.parent.mkdir(parents=True, exist_ok=True)
    official.write_text(TEXT)  # placed by hand: verified, then used
    with pytest.warns(UserWarning):
        assert len(load_domain_list("official:toy")) == 2
    official.write_text(TEXT + "Extra - Photo\n")
    with pytest.raises(DownloadError, match=f"{re.escape(str(official))} is not the research code's toy.txt"):
        load_domain_list("official:toy")


def test_unknown_official_name_lists_the_known(official: Path) -> None:
    with pytest.raises(ConfigError, match="official:nope is not a list of the research code; known: .*domain_list_20"):
        load_domain_list("official:nope")

