"""A following gateway joins its site's consultations as the server pushes their changes: one
accepted after it connected, the next one after that ended, and one that became active while
its link was down, listing its site's consultations over HTTP once per link and never
polling. The lists are counted in the server's own audit log (``consultation.list``, one
row per request, written before the answer)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sqlalchemy import func, select

from signaling.client import SignalingClient, UserCredentials
from signaling.schema import ConsultationAction, ConsultationState, ConsultationSummary, Role
from signaling.storage.models import AuditEventRow
from telemed.gateway.follow import Following
from telemed.gateway.runner import Gateway, GatewayConfig
from tests.helpers import PASSWORD, LiveServer, eventually
from tests.telemed.tcp_relay import tcp_relay

GATEWAY, KEY = "bed-7.wonju", "bed-7-key-for-the-follow-tests-0123456789"


def _summary(cid: str, state: str, created: str, site: str = "wonju") -> ConsultationSummary:
    return ConsultationSummary(
        id=cid,
        requesting_site=site,
        consulting_site="koriyama" if site == "wonju" else "wonju",
        state=ConsultationState(state),
        consent_cross_border=False,
        reason="",
        created_at=created,
        accepted_at=None,
        ended_at=None,
        allowed_actions=[],
    )


def test_newest_active_of_the_site_wins_and_pushes_keep_it_current() -> None:
    following = Following()
    following.connected("wonju")
    following.listed(
        [
            _summary("a", "active", "2026-01-01T10:00:00Z"),
            _summary("b", "active", "2026-01-01T11:00:00Z"),
            _summary("k", "active", "2026-01-01T12:00:00Z", site="koriyama"),  # not requested here
        ]
    )
    assert following.target() == "b"
    following.changed(_summary("c", "requested", "2026-01-01T13:00:00Z"))
    assert following.target() == "b"  # requested is not joinable yet
    following.changed(_summary("c", "active", "2026-01-01T13:00:00Z"))
    assert following.target() == "c"
    following.changed(_summary("c", "closed", "2026-01-01T13:00:00Z"))
    following.ended("b")
    assert following.target() == "a"
    following.refused("a")
    assert following.target() is None


def test_a_push_during_the_list_is_applied_over_its_answer() -> None:
    """The list's answer may predate a push that arrived while it was on its way: the push
    wins, whichever way it went."""
    following = Following()
    following.connected("wonju")
    following.changed(_summary("new", "active", "2026-01-01T12:00:00Z"))
    following.changed(_summary("old", "cancelled", "2026-01-01T09:00:00Z"))
    following.listed([_summary("old", "active", "2026-01-01T09:00:00Z")])  # before both
    assert following.target() == "new"
    following.changed(_summary("new", "closed", "2026-01-01T12:00:00Z"))
    assert following.target() is None
    # Once listed, later pushes are not replayed over the next link's list.
    following.connected("wonju")
    following.listed([_summary("x", "active", "2026-01-02T09:00:00Z")])
    assert following.target() == "x"


def test_a_configured_consultation_is_tried_on_each_link_and_when_it_becomes_active() -> None:
    following = Following("cfg")
    assert not following.lists
    following.connected("wonju")
    assert following.target() == "cfg"
    following.refused("cfg")  # not active yet
    assert following.target() is None
    following.changed(_summary("other", "active", "2026-01-01T12:00:00Z"))
    assert following.target() is None  # the site's others are not followed
    following.changed(_summary("cfg", "active", "2026-01-01T10:00:00Z", site="koriyama"))
    assert following.target() == "cfg"


@contextlib.asynccontextmanager
async def _clients(server: LiveServer) -> AsyncIterator[tuple[SignalingClient, SignalingClient]]:
    """Wonju's technician (requests) and Koriyama's doctor (accepts), signed in."""
    await server.add_user("tech.wonju", Role.TECHNICIAN, "wonju")
    await server.add_user("doctor.koriyama", Role.DOCTOR, "koriyama")
    tech = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
    doctor = SignalingClient(server.base_url, UserCredentials("doctor.koriyama", PASSWORD))
    await tech.login()
    await doctor.login()
    try:
        yield tech, doctor
    finally:
        await tech.close()
        await doctor.close()


async def _activate(tech: SignalingClient, doctor: SignalingClient) -> str:
    row = await tech.request_consultation("koriyama", False)
    await doctor.consultation_action(row.id, ConsultationAction.ACCEPT)
    return row.id


async def _lists(server: LiveServer) -> int:
    """How many times the gateway listed consultations, by the server's audit."""
    async with server.services.db.session() as session:
        query = select(func.count()).where(
            AuditEventRow.action == "consultation.list", AuditEventRow.actor_name == GATEWAY
        )
        return int((await session.scalars(query)).one())


@contextlib.asynccontextmanager
async def _gateway(server_url: str) -> AsyncIterator[Gateway]:
    gateway = Gateway(GatewayConfig(server_url, GATEWAY, KEY, mains_hz=50.0))
    running = asyncio.create_task(gateway.run(), name="gateway")
    try:
        yield gateway
    finally:
        running.cancel()
        await asyncio.wait([running])
        if not running.cancelled() and running.exception() is not None:
            raise AssertionError("the gateway failed") from running.exception()


async def _in(gateway: Gateway, cid: str | None) -> None:
    await eventually(lambda: gateway.consultation_id == cid, timeout=15, what=f"in {cid}")


async def test_consultations_accepted_after_connecting_are_joined_without_a_list(
    server: LiveServer,
) -> None:
    await server.add_gateway(GATEWAY, "wonju", KEY)
    async with _clients(server) as (tech, doctor), _gateway(server.base_url) as gateway:
        await eventually(lambda: gateway.lists_taken == 1, what="the first link's list")
        assert gateway.consultation_id is None  # nothing active yet
        first = await _activate(tech, doctor)
        await _in(gateway, first)
        # It ends: the gateway leaves, and joins the next one accepted.
        await doctor.consultation_action(first, ConsultationAction.CLOSE)
        await _in(gateway, None)
        second = await _activate(tech, doctor)
        await _in(gateway, second)
        assert await _lists(server) == 1
        assert gateway.lists_taken == 1 and gateway.client.connections == 1


async def test_a_consultation_accepted_while_the_link_was_down_is_joined_on_return(
    server: LiveServer,
) -> None:
    await server.add_gateway(GATEWAY, "wonju", KEY)
    port = int(server.base_url.rsplit(":", 1)[1])
    async with (
        tcp_relay(port) as relay,
        _clients(server) as (tech, doctor),
        _gateway(f"http://127.0.0.1:{relay.port}") as gateway,
    ):
        await eventually(lambda: gateway.lists_taken == 1, what="the first link's list")
        relay.cut()
        await eventually(lambda: not gateway.client.is_connected, what="the link down")
        cid = await _activate(tech, doctor)  # pushed to nobody: the gateway is away
        assert gateway.consultation_id is None
        relay.mend()
        await _in(gateway, cid)
        assert gateway.client.connections == 2
        # One list per link: the first, and the one after the link came back.
        assert await _lists(server) == 2
