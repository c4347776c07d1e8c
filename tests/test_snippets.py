"""Every Python snippet in README.md, README.zh-CN.md and docs/*.md runs, as the ``sh``
blocks already do in test_docs.py.

A page's ``python`` blocks run in order as one module, under pytest with the shipped
plugin, in a fresh folder: module-level code runs when pytest imports it, and the
page's ``test_*`` functions run as tests with the plugin's fixtures.  Blocks in another
language (``javascript``, ``text``, ``dotenv``) are not run.

What a page's prose takes as given (an ``app`` already made, a token stored at sign-in,
your own ``Account`` model) is set up by GIVEN, in front of the block that first needs
it, with real objects on a real emulator: never a stand-in that lets a snippet pass
without doing what it says.  ``from myapp import create_app`` (the docs' name for your
own app) finds MYAPP.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "README.zh-CN.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)")


@dataclass(frozen=True)
class Block:
    line: int
    code: str


def python_blocks(path: Path) -> list[Block]:
    """The ``python`` blocks of a Markdown page, dedented, with their first line number."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    fence = info = None
    body: list[str] = []
    start = 0
    for number, line in enumerate(lines, 1):
        opened = FENCE.match(line)
        if fence is None:
            if opened:
                fence, info, start, body = opened["fence"], opened["info"], number + 1, []
        elif line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
            if info == "python":
                blocks.append(Block(start, textwrap.dedent("\n".join(body))))
            fence = info = None
        else:
            body.append(line)
    return blocks


#: A real emulator, an app key, and a signed-in token, for pages whose prose has them.
_EMULATOR = """
import os as _os
from cryptography.hazmat.primitives import serialization as _serialization
from cryptography.hazmat.primitives.asymmetric import rsa as _rsa
from flask_alipay.testing import AlipayEmulator as _AlipayEmulator
from flask_alipay.testing.pytest_plugin import sign_in as _sign_in

_app_key = _rsa.generate_private_key(public_exponent=65537, key_size=2048)
_pem = _app_key.private_bytes(
    _serialization.Encoding.PEM, _serialization.PrivateFormat.PKCS8,
    _serialization.NoEncryption()).decode()
_emulator = _AlipayEmulator(app_public_key=_app_key.public_key())
_emulator.start(port=0)
_settings = {"SECRET_KEY": "given", "ALIPAY_PRIVATE_KEY": _pem, **_emulator.config()}


def _fresh_app():
    from flask import Flask
    made = Flask("given")
    made.config.update(_settings)
    made.config.update({k.replace("ALIPAY_", "ALIPAY_CN_", 1): v
                        for k, v in _settings.items() if k.startswith("ALIPAY_")})
    return made
"""

#: (page, index of the block) -> code run just before that block.
GIVEN: dict[tuple[str, int], str] = {
    # README: the Usage app reads FLASK_-prefixed settings; the later sections use an
    # app made by it, signed in once, with the token stored from user_logged_in.
    ("README.md", 0): _EMULATOR
    + """
for _name, _value in _settings.items():
    _os.environ["FLASK_" + _name] = _value
""",
    ("README.md", 3): """
app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})  # the recipe's factory, in short
db.init_app(app)
login_manager.init_app(app)
with app.app_context():
    db.create_all()
_tokens = []
user_logged_in.connect(lambda sender, token, **extra: _tokens.append(token), sender=app,
                       weak=False)
assert _sign_in(_emulator, app.test_client()).status_code == 302
stored = _tokens[0]
""",
    ("README.md", 4): """
app = _fresh_app()
""",
    # README's tests are for the Usage app, which does not run the Flask-Login recipe.
    ("README.md", 5): """
user_logged_in.disconnect(log_in_local_user)
user_logged_out.disconnect(log_out_local_user)
""",
    # configuration.md: a Flask app to fill, and one with a second instance's settings.
    ("docs/configuration.md", 0): _EMULATOR + "\nfrom flask import Flask\n",
    ("docs/configuration.md", 3): """
from flask_alipay import AlipayLogin
app = _fresh_app()
""",
    # signals.md: a site on Flask-SQLAlchemy with its own Account model (as README's
    # recipe has it, with id_kind and avatar) and an onboarding page; a token store of
    # its own, encrypting with Fernet; a refresh token stored at a real sign-in.
    ("docs/signals.md", 1): _EMULATOR
    + """
from flask_login import UserMixin
from flask_sqlalchemy import SQLAlchemy
from flask_alipay import AlipayLogin

app = _fresh_app()
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
db = SQLAlchemy(app)


class Account(UserMixin, db.Model):
    id = db.Column(db.Integer, primary_key=True)
    alipay_id = db.Column(db.String(64), unique=True, nullable=False)
    id_kind = db.Column(db.String(8))
    nick_name = db.Column(db.String(64))
    avatar = db.Column(db.String(512))


AlipayLogin(app)
app.add_url_rule("/onboarding", "onboarding", lambda: "welcome")
with app.app_context():
    db.create_all()
""",
    ("docs/signals.md", 3): """
from cryptography.fernet import Fernet as _Fernet

_fernet = _Fernet(_Fernet.generate_key())


def encrypt(text):
    return _fernet.encrypt(text.encode())


class AlipayToken:
    rows = {}

    @classmethod
    def save(cls, **row):
        cls.rows[row["alipay_id"]] = row

    @classmethod
    def update(cls, token):
        cls.rows["refreshed"] = token
""",
    ("docs/signals.md", 4): """
# Receivers run in no set order: welcome_new_users sends the new user to /onboarding
# only if it runs before log_in_local_user has made the account.
_done = _sign_in(_emulator, app.test_client())
assert _done.status_code == 302 and _done.headers["Location"] in ("/onboarding", "/"), _done.data
(_row,) = AlipayToken.rows.values()
stored_refresh_token = _fernet.decrypt(_row["refresh_token"]).decode()
with app.app_context():
    assert db.session.execute(db.select(Account)).scalar_one().nick_name == "小明"
""",
    # testing.md, "Without pytest": the app key pair a script has made or loaded.
    ("docs/testing.md", 5): """
from cryptography.hazmat.primitives import serialization as _serialization
from cryptography.hazmat.primitives.asymmetric import rsa as _rsa
app_key = _rsa.generate_private_key(public_exponent=65537, key_size=2048)
app_private_pem = app_key.private_bytes(
    _serialization.Encoding.PEM, _serialization.PrivateFormat.PKCS8,
    _serialization.NoEncryption()).decode()
""",
    # proxies.md: the site's app.
    ("docs/proxies.md", 0): "from flask import Flask\napp = Flask('site')\n",
}

#: ``myapp``: the docs' name for the reader's own app, a factory taking test settings.
MYAPP = """
from flask import Flask
from flask_alipay import AlipayLogin, current_alipay_user, login_required

alipay = AlipayLogin()


def create_app(config=None):
    app = Flask(__name__)
    app.config.update(config or {})
    alipay.init_app(app)

    @app.route("/me")
    @login_required
    def me():
        return current_alipay_user.get("nick_name", current_alipay_user.id)

    return app
"""


def page_module(path: Path) -> str:
    """The page's blocks as one module, each behind what GIVEN says it needs."""
    page = path.relative_to(ROOT).as_posix()
    parts: list[str] = []
    for index, block in enumerate(python_blocks(path)):
        given = GIVEN.get((page, index))
        if given:
            parts.append(f"# --- given before {page}:{block.line}\n{given.strip()}\n")
        parts.append(f"# --- {page}:{block.line}\n{block.code}\n")
    return "\n".join(parts)


SNIPPET_PAGES = [path for path in PAGES if python_blocks(path)]


@pytest.mark.parametrize(
    "path", SNIPPET_PAGES, ids=[p.relative_to(ROOT).as_posix() for p in SNIPPET_PAGES]
)
def test_the_pages_python_runs(path: Path, pytester: pytest.Pytester) -> None:
    name = "test_" + re.sub(r"\W", "_", path.relative_to(ROOT).as_posix())
    pytester.makepyfile(**{name: page_module(path), "myapp": MYAPP})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-W", "error")
    output = "\n".join(result.outlines)
    # 5: the page has no test of its own, but its module ran to the end.
    assert result.ret in (0, 5), output
    assert "error" not in result.parseoutcomes(), output


def test_every_page_with_python_is_run() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in SNIPPET_PAGES}
    assert "README.md" in names and "docs/signals.md" in names and "docs/testing.md" in names
    assert {page for page, _ in GIVEN} <= names  # no glue for a page that is not run
