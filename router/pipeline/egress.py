"""The egress guard: every outgoing TCP connection is checked on the address it actually dials.

``GuardedConnector`` is the aiohttp connector of the one outgoing client (router/pipeline/outbound.py): when a new
connection is opened, it resolves the host itself, checks **every** resolved address against the
policy, and connects to a validated IP (TLS still uses the URL's host name for SNI and certificate
checks, and the ``Host`` header is unchanged). Because the check runs where the socket is opened, it
covers DNS rebinding (the address checked is the address dialled), every redirect hop if redirects
are ever followed, and URLs built at run time from earlier responses.

Blocked by default: loopback, private (RFC 1918), link-local, CGNAT 100.64/10, unique-local
fc00::/7, multicast, unspecified, reserved/documentation ranges and cloud metadata addresses, also
when wrapped as IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) or
6to4 (2002::/16) addresses, and in odd notations (127.1, 0x7f000001, 2130706433, 0177.0.0.1).

``ROUTER_EGRESS_ALLOW`` opens what a self-hoster needs: comma-separated CIDRs and host names. An
address inside an allowed CIDR passes; a listed host name passes to whatever it resolves to.

httpx-secure and ssrfguard were considered; this module is kept instead because the allow-list
rules above (CIDR for literals, names for resolved hosts), its messages and an injectable resolver
for tests are specific to the router. It hooks aiohttp's ``TCPConnector._resolve_host``, the one
place every new connection gets its addresses from (IP literals included); tests/security/test_egress.py
proves on real sockets that nothing blocked is ever dialled, so an aiohttp change there fails loudly.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from router.errors import EgressBlocked

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses``: how host names are turned into IP addresses."""

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Checked in order; the first match names the reason. Metadata first, so its reason is the precise one.
_BLOCKED: tuple[tuple[IPNetwork, str], ...] = (
    (_V4("169.254.169.254/32"), "cloud metadata address"),
    (_V4("169.254.170.2/32"), "cloud metadata address"),  # ECS task metadata
    (_V4("100.100.100.200/32"), "cloud metadata address"),  # Alibaba
    (_V4("168.63.129.16/32"), "cloud metadata address"),  # Azure wire server
    (_V6("fd00:ec2::254/128"), "cloud metadata address"),
    (_V4("0.0.0.0/32"), "unspecified address"),
    (_V4("0.0.0.0/8"), "'this network' address"),
    (_V4("127.0.0.0/8"), "loopback address"),
    (_V4("10.0.0.0/8"), "private address"),
    (_V4("172.16.0.0/12"), "private address"),
    (_V4("192.168.0.0/16"), "private address"),
    (_V4("100.64.0.0/10"), "CGNAT address"),
    (_V4("169.254.0.0/16"), "link-local address"),
    (_V4("192.0.0.0/24"), "IETF protocol assignment address"),
    (_V4("192.0.2.0/24"), "documentation address"),
    (_V4("198.51.100.0/24"), "documentation address"),
    (_V4("203.0.113.0/24"), "documentation address"),
    (_V4("198.18.0.0/15"), "benchmarking address"),
    (_V4("224.0.0.0/4"), "multicast address"),
    (_V4("255.255.255.255/32"), "broadcast address"),
    (_V4("240.0.0.0/4"), "reserved address"),
    (_V6("::/128"), "unspecified address"),
    (_V6("::1/128"), "loopback address"),
    (_V6("fe80::/10"), "link-local address"),
    (_V6("fec0::/10"), "site-local address"),
    (_V6("fc00::/7"), "unique-local address"),
    (_V6("ff00::/8"), "multicast address"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64 address"),
    (_V6("100::/64"), "discard-only address"),
    (_V6("2001::/32"), "Teredo address"),
    (_V6("2001:db8::/32"), "documentation address"),
    (_V6("2001::/23"), "IETF protocol assignment address"),
    (_V6("::/8"), "reserved address"),
)
_NAT64 = _V6("64:ff9b::/96")
_SIX_TO_FOUR = _V6("2002::/16")
_ODD_V4 = frozenset("0123456789abcdefxABCDEFX.")


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries: IPv4-mapped, IPv4-compatible, NAT64 or 6to4."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    value = int(ip)
    if ip in _NAT64 or (value >> 32 == 0 and value > 0xFFFF):  # 64:ff9b::a.b.c.d, ::a.b.c.d
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:  # 2002:AABB:CCDD::/48
        return ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be dialled by default, or None when it is a public address."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        reason = blocked_reason(inner)
        if reason is not None:
            return f"{reason} {inner} inside {ip}"
    for network, reason in _BLOCKED:
        if ip.version == network.version and ip in network:
            return reason
    if not ip.is_global:
        return "non-public address"
    return None


def parse_ip_literal(host: str) -> IPAddress | None:
    """An IP address written in the host, including the odd IPv4 notations ``inet_aton`` accepts."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    if text and set(text) <= _ODD_V4 and any(c.isdigit() for c in text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))  # 127.1, 0x7f000001, 2130706433, 0177.0.0.1
        except OSError:
            return None
    return None


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


@dataclass(frozen=True)
class EgressPolicy:
    """What outgoing connections may reach beyond public addresses."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> EgressPolicy:
        """Parse ``ROUTER_EGRESS_ALLOW``; raises ValueError naming a bad entry."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = _normal_host(entry)
            labels = name.split(".")
            if parse_ip_literal(name) is not None or not all(
                label and len(label) <= 63 and label.replace("-", "").replace("_", "").isalnum() and label.isascii()
                for label in labels
            ):
                raise ValueError(f"{entry!r} is neither a CIDR (10.0.0.0/8, fd00::/8) nor a host name")
            hosts.add(name)
        return cls(tuple(networks), frozenset(hosts))

    def allows_network(self, ip: IPAddress) -> bool:
        candidates = [ip]
        inner = embedded_ipv4(ip)
        if inner is not None:
            candidates.append(inner)
        return any(c.version == n.version and c in n for c in candidates for n in self.networks)

    def check(self, host: str, ip: IPAddress) -> None:
        """Raise EgressBlocked unless ``host`` (as written in the URL) may be reached at ``ip``."""
        if _normal_host(host) in self.hosts or self.allows_network(ip):
            return
        reason = blocked_reason(ip)
        if reason is None:
            return
        literal = parse_ip_literal(host)
        written = _normal_host(host)
        target = host if literal is not None and (written == str(ip) or ":" in written) else f"{host} ({ip})"
        inner = embedded_ipv4(ip)
        opener = inner if inner is not None and blocked_reason(inner) is not None else ip
        how = f"ROUTER_EGRESS_ALLOW={opener}/{32 if opener.version == 4 else 128}"
        if literal is None:
            how += f" or ROUTER_EGRESS_ALLOW={_normal_host(host)}"
        raise EgressBlocked(f"egress to {target} blocked: {reason}; allow it with {how}")


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the system resolver (getaddrinfo), TCP addresses only, in its preferred order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in seen:
            seen.append(address)
    return seen


class Guard:
    """Turns a host from a URL into the addresses that may be dialled, or refuses it."""

    def __init__(self, policy: EgressPolicy, resolver: Resolver | None = None) -> None:
        self.policy = policy
        self.resolver = resolver or system_resolver

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The validated addresses to dial for ``host``; raises EgressBlocked if any is refused."""
        literal = parse_ip_literal(host)
        if literal is not None:
            self.policy.check(host, literal)
            return [literal]
        try:
            answers = await self.resolver(host.rstrip(".") or host, port)  # "localhost." is "localhost"
        except (OSError, UnicodeError) as exc:
            raise OSError(f"cannot resolve {host!r}: {exc}") from None
        resolved: list[IPAddress] = []
        for answer in answers:
            try:
                resolved.append(ipaddress.ip_address(answer.split("%", 1)[0]))
            except ValueError:
                raise EgressBlocked(f"egress to {host} blocked: the resolver answered {answer!r}") from None
        if not resolved:
            raise OSError(f"cannot resolve {host!r}: no address")
        for ip in resolved:  # every answer must pass, so a mixed answer cannot smuggle a private one
            self.policy.check(host, ip)
        return resolved


class GuardedConnector(aiohttp.TCPConnector):
    """aiohttp's connector with the check where a new connection gets its addresses: the host of the URL is
    resolved by the guard, every address is validated, and only validated IPs are dialled. TLS still uses
    the URL's host name for SNI and certificates, and the ``Host`` header is unchanged.

    aiohttp's own DNS cache is bypassed (each new connection resolves afresh, so a rebinding answer is
    seen), and no proxy is ever used (``trust_env`` stays off in the session).
    """

    def __init__(self, guard: Guard, **kwargs: typing.Any) -> None:
        super().__init__(use_dns_cache=False, **kwargs)
        self.guard = guard

    async def _resolve_host(
        self, host: str, port: int, traces: typing.Any = None
    ) -> list[typing.Any]:  # aiohttp's ResolveResult dicts
        ips = await self.guard.addresses(host, port)
        return [
            {
                "hostname": host,
                "host": str(ip),
                "port": port,
                "family": socket.AF_INET if ip.version == 4 else socket.AF_INET6,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for ip in ips
        ]
