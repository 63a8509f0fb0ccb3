"""The bed's network is what it claims: each site reaches the cloud only through its
router's NAT, and nothing reaches a site host but the replies to what it sent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.wan.netns import SERVICE_IP, WanBed, missing, namespaces

pytestmark = [pytest.mark.wan, pytest.mark.slow]


async def test_the_sites_are_behind_real_nat(tmp_path: Path) -> None:
    why = missing()
    if why is not None:
        pytest.skip(why)
    async with WanBed(tmp_path, services=False) as bed:
        cloud, koriyama, wonju = bed.cloud, bed.koriyama, bed.wonju
        for site in (koriyama, wonju):
            # Out through the NAT: the cloud sees the router's public address, and its
            # answer finds its way back to the host behind it.
            seen, answered = await bed.udp_probe(site.host, cloud, SERVICE_IP, bind=SERVICE_IP)
            assert (seen, answered) == (site.public_ip, True)
        # In: nothing reaches a site host, neither at its private address (the cloud routes
        # it to the router, which lets no new flow in) nor at its router's public one.
        blocked = [
            (cloud, wonju.host, wonju.host_ip),
            (cloud, wonju.host, wonju.public_ip),
            (koriyama.host, wonju.host, wonju.host_ip),
            (koriyama.host, wonju.host, wonju.public_ip),
            (wonju.host, koriyama.host, koriyama.host_ip),
            (wonju.host, koriyama.host, koriyama.public_ip),
        ]
        results = await asyncio.gather(
            *(
                bed.udp_probe(src, dst, address, port=5001 + k)
                for k, (src, dst, address) in enumerate(blocked)
            )
        )
        assert results == [(None, False)] * len(blocked)
        # A new public address (Site.remap) is a new mapping: the cloud sees it.
        await wonju.remap("100.64.2.3")
        seen, answered = await bed.udp_probe(wonju.host, cloud, SERVICE_IP, bind=SERVICE_IP)
        assert (seen, answered) == ("100.64.2.3", True)
    # Removed on exit.
    assert not {ns.name for ns in bed.namespaces} & set(await namespaces())
