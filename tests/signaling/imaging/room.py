"""An active Wonju-Koriyama consultation with images: everyone who may or may not send or
read them, and the STOW-RS request as a gateway sends it (built here, byte for byte)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy import select

from signaling.client import KEEPALIVE_S
from signaling.config import SiteConfig
from signaling.imaging.stow import content_digest
from signaling.schema import Role
from signaling.storage.models import AuditEventRow, ImagingInstanceRow
from tests.helpers import LiveServer
from tests.signaling.sockets import active_consultation

SEOUL = SiteConfig(
    code="seoul", name="Seoul", country="KR", language="ko", timezone="Asia/Seoul", mains_hz=60
)
GATEWAY_KEY = "gateway-key-0123456789abcdef-0123456789"
BOUNDARY = "imaging-test-boundary-0123456789"
RELATED = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def part(
    data: bytes, *, digest: str | None = "auto", content_type: str = "application/dicom"
) -> bytes:
    """One body part: its headers (Content-Digest of ``data`` unless told) and bytes."""
    headers = [f"Content-Type: {content_type}"]
    if digest == "auto":
        headers.append(f"Content-Digest: {content_digest(data)}")
    elif digest is not None:
        headers.append(f"Content-Digest: {digest}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + data


def related(parts: Sequence[bytes], boundary: str = BOUNDARY) -> bytes:
    """A multipart/related body of ``parts`` (each from :func:`part`)."""
    out = b""
    for p in parts:
        out += b"--" + boundary.encode() + b"\r\n" + p + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n"


class ImagingRoom:
    """Wonju (requesting, bedside) asks Koriyama; ``gw`` is Wonju's gateway, ``gk``
    Koriyama's; ``ds`` a Seoul doctor (another site), ``admin`` an administrator."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.tokens: dict[str, str] = {}
        self.cid = ""
        # One client for every request: making one (its TLS context) costs more than a
        # request here.
        self.http = httpx.AsyncClient(
            base_url=server.base_url,
            timeout=60,
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S),  # see signaling.client
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> ImagingRoom:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(
        self, method: str, path: str, who: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        auth = {"Authorization": f"Bearer {self.tokens[who]}"}
        return await self.http.request(method, path, headers={**auth, **(headers or {})}, **kwargs)

    async def setup(self, *, seoul: bool = True) -> None:
        """Accounts, the active consultation, the gateways' tokens. ``seoul``: also a
        doctor and an administrator of Seoul (the server must know the site)."""
        users = [
            ("dw", Role.DOCTOR, "wonju"),
            ("tw", Role.TECHNICIAN, "wonju"),
            ("dk", Role.DOCTOR, "koriyama"),
        ]
        if seoul:
            users += [("ds", Role.DOCTOR, "seoul"), ("admin", Role.ADMIN, "seoul")]
        self.tokens, self.cid = await active_consultation(self.server, users)
        for name, site in (("gw", "wonju"), ("gk", "koriyama")):
            await self.server.add_gateway(name, site, GATEWAY_KEY)
            response = await self.http.post(
                "/api/auth/gateway", json={"name": name, "key": GATEWAY_KEY}
            )
            response.raise_for_status()
            self.tokens[name] = response.json()["token"]

    @property
    def base(self) -> str:
        return f"/api/consultations/{self.cid}/dicomweb"

    async def stow(
        self, body: bytes, who: str = "gw", content_type: str = RELATED, cid: str | None = None
    ) -> httpx.Response:
        response = await self.request(
            "POST",
            f"/api/consultations/{cid or self.cid}/dicomweb/studies",
            who,
            headers={"Content-Type": content_type},
            content=body,
        )
        assert response.status_code < 500, response.text
        return response

    async def get(self, path: str, who: str = "dk", **kwargs: Any) -> httpx.Response:
        """GET a DICOMweb path; a 5xx is only allowed as the 503 of a server with no
        renderer."""
        response = await self.request("GET", self.base + path, who, **kwargs)
        assert response.status_code < 500 or response.status_code == 503, response.text
        return response

    async def consent(self, value: bool, who: str = "tw") -> httpx.Response:
        return await self.request(
            "PUT", f"/api/consultations/{self.cid}/imaging-consent", who, json={"consent": value}
        )

    async def audit(self, action: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(actor, outcome, detail) of each audit row of ``action``, in order."""
        async with self.server.services.db.session() as session:
            query = select(AuditEventRow).where(AuditEventRow.action == action)
            rows = (await session.scalars(query.order_by(AuditEventRow.seq))).all()
        return [(r.actor_name, r.outcome, json.loads(r.detail)) for r in rows]

    async def indexed(self) -> list[ImagingInstanceRow]:
        async with self.server.services.db.session() as session:
            query = select(ImagingInstanceRow).order_by(ImagingInstanceRow.id)
            return list((await session.scalars(query)).all())

    def files(self) -> list[str]:
        """Every file under the server's imaging directory (names relative to it)."""
        data_dir = self.server.config.data_dir
        assert data_dir is not None
        root = data_dir / "imaging"
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
