"""Link keys as a deployment makes them: `countersign keys generate links`, the same on every host."""

from pathlib import Path

from typer.testing import CliRunner

from countersign.cli.main import app
from countersign.security.link_keys import LinkKeyring, generate


def test_a_generated_key_signs_and_a_keyring_of_it_verifies() -> None:
    text = generate("l-test")
    assert text.startswith("l-test:")
    worker, gateway = LinkKeyring.from_text(text), LinkKeyring.from_text(text)
    assert gateway.verify("l-test", b"link", worker.mac("l-test", b"link"))
    assert not LinkKeyring.from_text(generate("l-test")).verify(
        "l-test", b"link", worker.mac("l-test", b"link")
    )


def test_the_cli_prints_a_key_the_settings_take(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["keys", "generate", "links", "--id", "l2"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    # Given as the setting, the key is used as it is: nothing is read from, or made in, the data dir.
    assert LinkKeyring.load(key, tmp_path).active_key_id == "l2"
    assert list(tmp_path.iterdir()) == []
