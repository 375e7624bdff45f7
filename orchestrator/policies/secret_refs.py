"""Where a resource's secret is kept: ``{env: NAME}`` or ``{file: PATH}``, never the secret.

A resource file is read, copied, reviewed and committed; a secret written into it is a secret
leaked, so an inline value (any text, number or list in place of the mapping) is refused with
one line that does not repeat it. A reference is resolved when the provider is built, not when
the file loads, so ``policy validate`` runs in a pipeline that holds none of the secrets.
``resolve`` returns a ``pydantic.SecretStr``: its ``repr`` and ``str`` are asterisks, and no
error it raises contains the value.

The secret itself pasted as the variable's *name* (``{env: sk_live_...}``) must not leak either:
a name that cannot be a variable's (not ``[A-Za-z_][A-Za-z0-9_]*``, longer than 64, not text)
is refused without being repeated, and a valid name is repeated in a message only when it reads
like one (``_showable``: letters of one case, no run of 16 or more characters between
underscores); otherwise the message says "the variable named in env" and why it is not shown.
A ``file`` path is repeated: a path is not a secret.

A relative ``file`` is taken from the resource file's folder: the loader passes that folder as
the validation context ``{"base": folder}``, and the model holds the joined path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from orchestrator.domain.errors import InputError

__all__ = ["INLINE", "MAX_ENV_NAME", "MAX_SECRET_BYTES", "NOT_A_NAME", "SecretRef",
           "relative_to_resource"]

MAX_SECRET_BYTES = 64 * 1024  # a secret is a line; a bigger file is not a secret file
MAX_ENV_NAME = 64
_ENV_NAME = re.compile(rf"[A-Za-z_][A-Za-z0-9_]{{0,{MAX_ENV_NAME - 1}}}")
NOT_A_NAME = (f"the env name is not a valid variable name (1-{MAX_ENV_NAME} letters, digits and "
              "_, not starting with a digit; it is not repeated here): did you paste the secret "
              "itself? reference it by name: put it in a variable of the orchestrator's "
              "environment and write {env: THAT_NAME}")
INLINE = ("an inline secret is refused: this file is read, copied and committed, so the secret "
          "would leak with it; write {env: NAME} (an environment variable of the orchestrator) "
          "or {file: PATH} (a file only the orchestrator can read)")


def relative_to_resource(path: Path, info: ValidationInfo) -> Path:
    """``path`` as written, joined to the resource file's folder when the loader gave it."""
    base = (info.context or {}).get("base") if isinstance(info.context, dict) else None
    return path if base is None or path.is_absolute() else Path(base) / path


class SecretRef(BaseModel):
    """Exactly one of ``env`` (an environment variable's name) or ``file`` (a path)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    env: str | None = None
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_inline(cls, data: Any) -> Any:
        if data is not None and not isinstance(data, dict):  # never repeats the value
            raise PydanticCustomError("policy_rule", "{message}", {"field": "", "message": INLINE})
        return data

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, name: Any) -> str | None:
        if name is not None and not (isinstance(name, str) and _ENV_NAME.fullmatch(name)):
            raise ValueError(NOT_A_NAME)  # never repeats it: it may be the secret
        return name

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for key, value in super().__repr_args__():
            yield key, value if key != "env" or value is None or _showable(value) else "<hidden>"

    @field_validator("file")
    @classmethod
    def _file(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return None if path is None else relative_to_resource(path, info)

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise PydanticCustomError("policy_rule", "{message}", {
                "field": "", "message": "give exactly one of env (a variable's name) or file "
                                        "(a path); e.g. {env: AUTH0_MGMT_SECRET}"})
        return self

    def resolve(self, where: str, environ: Mapping[str, str] | None = None) -> SecretStr:
        """The secret; InputError (one line starting with ``where``, e.g. ``identity provider
        auth0-prod: spec.auth0.clientSecret``) when it cannot be had. A file's one trailing
        newline is not part of the secret."""
        if self.env is not None:
            value = (os.environ if environ is None else environ).get(self.env)
            named = (f"environment variable {self.env}" if _showable(self.env) else
                     "the environment variable named in env (its name is not repeated: it "
                     "looks like a secret, not a variable's name; if it is the secret, put it "
                     "in a variable and write that variable's name)")
            if value is None:
                raise InputError(f"{where}: {named} is not set; set it in the orchestrator's "
                                 "environment or use {file: PATH}")
            if not value:
                raise InputError(f"{where}: {named} is empty; set it to the secret")
            return SecretStr(value)
        assert self.file is not None
        try:
            with self.file.open("rb") as handle:
                raw = handle.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise InputError(f"{where}: cannot read {self.file} ({exc.strerror}); check the "
                             "path (relative paths start at the resource file's folder) and "
                             "that the orchestrator may read it") from None
        if len(raw) > MAX_SECRET_BYTES:
            raise InputError(f"{where}: {self.file} is larger than "
                             f"{MAX_SECRET_BYTES // 1024} KiB, so it is not a secret file; "
                             "check the path")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{where}: {self.file} is not UTF-8 text; write the secret as "
                             "text") from None
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            raise InputError(f"{where}: {self.file} is empty; write the secret into it")
        return SecretStr(text)


def _showable(name: str) -> bool:
    """Whether a valid variable name reads like one (``AUTH0_MGMT_SECRET``, ``oidc_iat``) and
    not like a token pasted in its place (mixed case, or a long run without an underscore)."""
    return name in (name.upper(), name.lower()) and all(len(w) < 16 for w in name.split("_"))
