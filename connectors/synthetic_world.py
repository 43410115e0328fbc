"""The synthetic organisation behind ``SyntheticConnector``: entities and their daily figures.

Everything is a pure function of the organisation's seed and the entity/date asked for: each
(entity, date) draws from its own ``numpy`` generator keyed on the seed, a stable hash of the
entity id and the date ordinal, so any window reproduces the rows of any other window that
overlaps it. Restated figures (the last ``restatement_days`` before ``as_of``) come from a
second generator keyed also on ``min(days since the date, restatement_days)``.

Campaign "slots" live in accounts: slot 0 of every account is an always-on campaign with a
daily budget; the other slots run back-to-back flights (14-90 days, a short gap between them),
each flight a campaign of its own with a lifetime budget. Some flights are paused part-way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

EPOCH = dt.date(2020, 1, 1)
AD_PLATFORMS = ("meta", "dv360", "ttd")
CRMS = ("hubspot", "salesforce")
CURRENCIES = ("USD", "EUR", "GBP")
REGIONS = {"USD": "US", "EUR": "EU", "GBP": "UK"}
BRANDS = ("Northwind", "Contoso", "Fabrikam", "Tailspin", "Litware", "Adatum", "Proseware")
THEMES = ("Prospecting", "Retargeting", "Brand Awareness", "Lead Gen", "Product Launch",
          "Seasonal Sale", "Webinar Promo", "Video Reach")
AUDIENCES = ("Lookalike 1%", "Retargeting 30d", "In-market B2B", "Interest: Finance",
             "Broad 25-54", "CRM Match", "Contextual News", "Competitor Conquest")
FORMATS = ("Static 1080x1080", "Video 15s", "Carousel", "Banner 300x250", "Video 30s",
           "Native", "Banner 728x90", "Story 9x16")
LABELS = ("q1", "q2", "q3", "q4", "prospecting", "retargeting", "brand", "performance",
          "test", "evergreen")
# Weekday multipliers (Mon..Sun) for a B2B-leaning and a consumer-leaning organisation.
DOW_B2B = (1.0, 1.06, 1.05, 1.0, 0.9, 0.62, 0.68)
DOW_B2C = (0.95, 0.95, 0.97, 1.0, 1.05, 1.12, 1.1)


def stable_hash(*parts: Any) -> int:
    """A 64-bit hash of ``parts`` that, unlike ``hash()``, is the same in every process."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def unit_hash(*parts: Any) -> float:
    """A stable number in [0, 1) derived from ``parts``."""
    return stable_hash(*parts) / 2.0**64


def seed_for(org_id: str) -> int:
    """The default seed of an organisation."""
    return int.from_bytes(hashlib.sha256(org_id.encode()).digest()[:8], "big")


def _to_date(value: Any) -> dt.date | None:
    """A date from a date, a datetime or ISO text (None stays None)."""
    return None if value is None else dt.date.fromisoformat(str(value)[:10])


@dataclass(frozen=True)
class WorldSettings:
    """The knobs of a synthetic organisation (all optional in the connection settings)."""

    seed: int
    as_of: dt.date
    accounts_per_platform: int = 2
    campaigns_per_account: int = 3
    ad_groups_per_campaign: int = 2
    ads_per_ad_group: int = 2
    malformed_rate: float = 0.002
    restatement_days: int = 3
    platforms: tuple[str, ...] = AD_PLATFORMS
    crms: tuple[str, ...] = CRMS

    @classmethod
    def from_config(cls, org_id: str, settings: Any, state: Any) -> WorldSettings:
        today = _to_date(state.get("today")) or dt.date.today()
        platforms = tuple(settings.get("platforms", AD_PLATFORMS))
        crms = tuple(settings.get("crms", CRMS))
        unknown = sorted(set(platforms) - set(AD_PLATFORMS)) + sorted(set(crms) - set(CRMS))
        if unknown:
            raise ValueError(f"synthetic connector: unknown platforms/crms {unknown}; choose "
                             f"from {', '.join(AD_PLATFORMS + CRMS)}")
        knobs = {name: kind(settings[name]) for name, kind in _KNOBS.items() if name in settings}
        if any(knobs.get(name, 1) > 99 for name in _COUNTS):
            raise ValueError(f"synthetic connector: {', '.join(_COUNTS)} must be at most 99")
        seed = settings.get("seed")
        return cls(seed=int(seed) if seed is not None else seed_for(org_id),
                   as_of=_to_date(settings.get("as_of")) or today, platforms=platforms,
                   crms=crms, **knobs)


_COUNTS = ("accounts_per_platform", "campaigns_per_account", "ad_groups_per_campaign",
           "ads_per_ad_group")
_KNOBS: dict[str, type] = {**dict.fromkeys(_COUNTS, int), "malformed_rate": float,
                           "restatement_days": int}


@dataclass(frozen=True)
class Account:
    platform: str
    index: int
    id: str
    name: str
    currency: str
    brand: str


@dataclass(frozen=True)
class Ad:
    id: str
    name: str
    ad_group_id: str
    ad_group_name: str


@dataclass(frozen=True)
class Campaign:
    """One campaign (one flight of a slot); ``end`` is None for always-on campaigns."""

    account: Account
    id: str
    parent_id: str  # DV360: the campaign above the insertion order
    name: str
    objective: str  # sales / leads / awareness
    budget_type: str  # daily / lifetime
    budget: float  # major units of the account currency
    start: dt.date
    end: dt.date | None
    paused_from: dt.date | None
    labels: tuple[str, ...]
    video: bool
    ads: tuple[Ad, ...]
    cpm: float
    aov: float
    frequency: float
    thruplay_rate: float
    ad_weights: tuple[float, ...]
    ad_ctr: tuple[float, ...]
    ad_cvr: tuple[float, ...]

    def delivers_on(self, day: dt.date) -> bool:
        if day < self.start or (self.end is not None and day > self.end):
            return False
        return self.paused_from is None or day < self.paused_from

    def status(self, as_of: dt.date) -> str:
        """``active`` / ``paused`` / ``archived`` as the platform would show it on ``as_of``."""
        if self.end is not None and self.end < as_of - dt.timedelta(days=30):
            return "archived"
        if self.paused_from is not None and self.paused_from <= as_of:
            return "paused"
        return "active"

    def daily_target(self) -> float:
        if self.budget_type == "daily":
            return self.budget * 0.85
        days = ((self.end or self.start) - self.start).days + 1
        return self.budget / days


@dataclass(frozen=True)
class AdDay:
    """One ad's figures on one day, in the account currency."""

    ad: Ad
    spend: float
    impressions: int
    clicks: int
    link_clicks: int
    landing_page_views: int
    leads: int
    purchases: int
    purchase_value: float
    video_views: int | None
    reach: int


@dataclass(frozen=True)
class Deal:
    """A CRM deal as of ``as_of``; utm values point at synthetic campaigns for most deals."""

    id: str
    name: str
    amount: float
    currency: str
    created_at: dt.datetime
    close_date: dt.date
    is_closed: bool
    is_won: bool
    progress: float  # 0..1 through the pipeline, for open deals
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    modified_at: dt.datetime


UTM = {"meta": ("facebook", "paid_social"), "dv360": ("dv360", "display"),
       "ttd": ("thetradedesk", "programmatic")}


class World:
    """The accounts, campaigns, ads, daily figures and deals of one synthetic organisation."""

    def __init__(self, org_currency: str, settings: WorldSettings) -> None:
        self.org_currency = org_currency
        self.s = settings
        seed = settings.seed
        # Ids scramble a structured number with bijections of [0, 10**15): multiply by a
        # number coprime with 10 and add a salt, reverse the digits, repeat. Ids are thus
        # unique within the org and differ between orgs.
        self._keys = [(stable_hash(seed, "mult", i) % 10**11 * 10 + (1, 3, 7, 9)[i + seed % 2],
                       stable_hash(seed, "salt", i) % 10**15) for i in range(2)]
        self.dow = DOW_B2B if seed % 3 else DOW_B2C
        others = [c for c in CURRENCIES if c != org_currency]
        self.currencies = (org_currency, *others)
        self._campaigns: dict[tuple[Account, int, int], Campaign] = {}
        self._slots: dict[tuple[str, int, int], tuple[int, int, int, bool]] = {}
        self._live: dict[dt.date, list[Campaign]] = {}

    def rng(self, *parts: Any) -> np.random.Generator:
        return np.random.default_rng([self.s.seed, stable_hash(*parts)])

    def number(self, kind: int, p: int = 0, account: int = 0, slot: int = 0, k: int = 0,
               group: int = 0, ad: int = 0) -> int:
        """A number unique within the org per (kind, platform, account, slot, flight, ...)."""
        n = kind
        for value, radix in ((p, 10), (account, 100), (slot, 100), (k, 10_000), (group, 100),
                             (ad, 100)):
            n = n * radix + value
        for round_, (mult, salt) in enumerate(self._keys):
            n = (n * mult + salt) % 10**15
            if not round_:
                n = int(f"{n:015d}"[::-1])
        return n

    def entity_id(self, platform: str, kind: int, *indices: int) -> str:
        n = self.number(kind, AD_PLATFORMS.index(platform), *indices)
        if platform == "meta":
            return f"{'1' if kind == 0 else '120'}{n:015d}"
        if platform == "ttd":
            return np.base_repr(n, 36).lower().rjust(10, "0")
        return str(10**15 * (kind + 1) + n)

    @cached_property
    def accounts(self) -> dict[str, list[Account]]:
        out: dict[str, list[Account]] = {}
        g = 0
        for platform in AD_PLATFORMS:
            accounts = []
            for i in range(self.s.accounts_per_platform):
                currency = self.currencies[g % len(self.currencies)]
                brand = BRANDS[(stable_hash(self.s.seed, "brand") + g) % len(BRANDS)]
                accounts.append(Account(platform, i, self.entity_id(platform, 0, i),
                                        f"{brand} {REGIONS[currency]} {i + 1}", currency, brand))
                g += 1
            out[platform] = accounts
        return {p: out[p] for p in self.s.platforms}

    def _slot(self, platform: str, account: int, slot: int) -> tuple[int, int, int, bool]:
        """(anchor offset, flight length, gap, always-on) of a campaign slot."""
        key = (platform, account, slot)
        if key not in self._slots:
            rng = self.rng("slot", platform, account, slot)
            length, gap = int(rng.integers(14, 91)), int(rng.integers(0, 15))
            self._slots[key] = (int(rng.integers(0, length + gap)), length, gap, slot == 0)
        return self._slots[key]

    def campaigns(self, platform: str, start: dt.date, end: dt.date) -> list[Campaign]:
        """Campaigns of ``platform`` whose flight overlaps ``[start, end]``."""
        out = []
        for account in self.accounts.get(platform, []):
            for slot in range(self.s.campaigns_per_account):
                offset, length, gap, always_on = self._slot(platform, account.index, slot)
                if always_on:
                    c = self._campaign(account, slot, 0)
                    if c.start <= end:
                        out.append(c)
                    continue
                period = length + gap
                first = max(0, ((start - EPOCH).days - offset - length) // period)
                last = ((end - EPOCH).days - offset) // period
                for k in range(first, last + 1):
                    c = self._campaign(account, slot, k)
                    if c.start <= end and c.end is not None and c.end >= start:
                        out.append(c)
        return out

    def _campaign(self, account: Account, slot: int, k: int) -> Campaign:
        key = (account, slot, k)
        if key not in self._campaigns:
            self._campaigns[key] = self._make_campaign(account, slot, k)
        return self._campaigns[key]

    def _make_campaign(self, account: Account, slot: int, k: int) -> Campaign:
        offset, length, gap, always_on = self._slot(account.platform, account.index, slot)
        rng = self.rng("campaign", account.platform, account.index, slot, k)
        theme = THEMES[int(rng.integers(len(THEMES)))]
        objective = {"Lead Gen": "leads", "Webinar Promo": "leads", "Brand Awareness": "awareness",
                     "Video Reach": "awareness"}.get(theme, "sales")
        video = objective == "awareness" or bool(rng.random() < 0.2)
        if always_on:
            start = dt.date(2023, 1, 1) + dt.timedelta(days=int(rng.integers(0, 900)))
            end, budget_type = None, "daily"
            budget = float(round(rng.uniform(50, 1500), -1))
            paused = (start + dt.timedelta(days=int(rng.integers(200, 2000)))
                      if rng.random() < 0.25 else None)
            name = f"{account.brand} | Always-On {theme}"
        else:
            start = EPOCH + dt.timedelta(days=offset + k * (length + gap))
            end, budget_type = start + dt.timedelta(days=length - 1), "lifetime"
            budget = float(round(rng.uniform(100, 2000) * length, -2))
            paused = (start + dt.timedelta(days=int(rng.integers(1, length)))
                      if rng.random() < 0.15 else None)
            name = f"{account.brand} | {theme} | {start:%b %Y} #{k}"
        labels = tuple(sorted({LABELS[int(i)] for i in rng.integers(0, len(LABELS), 2)}))
        ads = []
        for g in range(self.s.ad_groups_per_campaign):
            group_id = self.entity_id(account.platform, 2, account.index, slot, k, g)
            group_name = f"{AUDIENCES[int(rng.integers(len(AUDIENCES)))]} #{g + 1}"
            for a in range(self.s.ads_per_ad_group):
                fmt = FORMATS[int(rng.integers(len(FORMATS)))]
                ads.append(Ad(self.entity_id(account.platform, 3, account.index, slot, k,
                                             g, a), f"{fmt} v{a + 1}", group_id, group_name))
        n = len(ads)
        return Campaign(
            account=account, id=self.entity_id(account.platform, 1, account.index, slot, k),
            parent_id=self.entity_id(account.platform, 4, account.index, slot),
            name=name, objective=objective, budget_type=budget_type, budget=budget,
            start=start, end=end, paused_from=paused, labels=labels, video=video,
            ads=tuple(ads), cpm=float(rng.uniform(2, 15)), aov=float(rng.uniform(40, 250)),
            frequency=float(rng.uniform(1.2, 2.5)), thruplay_rate=float(rng.uniform(0.15, 0.35)),
            ad_weights=tuple(float(x) for x in rng.lognormal(0, 0.5, n)),
            ad_ctr=tuple(float(x) for x in rng.uniform(0.003, 0.02, n)),
            ad_cvr=tuple(float(x) for x in rng.uniform(0.01, 0.05, n)),
        )

    def ad_days(self, campaign: Campaign, day: dt.date) -> list[AdDay]:
        """Figures of the campaign's ads on ``day`` as reported on ``as_of`` (no future days)."""
        age = (self.s.as_of - day).days
        if age < 0 or not campaign.delivers_on(day):
            return []
        rng = self.rng("perf", campaign.id, day.toordinal())
        n = len(campaign.ads)
        weights = np.array(campaign.ad_weights) * rng.lognormal(0, 0.25, n)
        target = campaign.daily_target() * self.dow[day.weekday()] * rng.lognormal(0, 0.15)
        spend = target * weights / weights.sum()
        cpm = campaign.cpm * (1.6 if campaign.video else 1.0) * rng.lognormal(0, 0.1, n)
        impressions = np.floor(spend / cpm * 1000).astype(np.int64)
        clicks = rng.binomial(impressions, campaign.ad_ctr)
        link_clicks = rng.binomial(clicks, 0.8)
        lpv = rng.binomial(link_clicks, 0.75)
        cvr = np.array(campaign.ad_cvr) * (0.3 if campaign.objective == "awareness" else 1.0)
        conversions = rng.binomial(clicks, cvr)
        lead_share = {"leads": 0.95, "sales": 0.2, "awareness": 0.3}[campaign.objective]
        leads = rng.binomial(conversions, lead_share)
        purchases = conversions - leads
        value = purchases * campaign.aov * rng.lognormal(0, 0.3, n)
        views = rng.binomial(impressions, campaign.thruplay_rate) if campaign.video else None
        reach = np.ceil(impressions / (campaign.frequency * rng.lognormal(0, 0.05, n)))
        settle = min(age, self.s.restatement_days)
        if settle < self.s.restatement_days:
            # Provisional figures: slightly low, conversions more so (attribution lag).
            late = self.rng("restate", campaign.id, day.toordinal(), settle)
            share = (self.s.restatement_days - settle) / self.s.restatement_days
            f_cost = 1 - late.uniform(0.005, 0.04) * share
            f_conv = 1 - late.uniform(0.05, 0.3) * share
            spend, value = spend * f_cost, value * f_conv
            impressions = np.floor(impressions * f_cost).astype(np.int64)
            clicks, link_clicks, lpv, reach = (np.floor(x * f_cost) for x in
                                               (clicks, link_clicks, lpv, reach))
            leads, purchases = np.floor(leads * f_conv), np.floor(purchases * f_conv)
            views = None if views is None else np.floor(views * f_cost)
        return [
            AdDay(ad, round(float(spend[i]), 2), int(impressions[i]), int(clicks[i]),
                  int(link_clicks[i]), int(lpv[i]), int(leads[i]), int(purchases[i]),
                  round(float(value[i]), 2), None if views is None else int(views[i]),
                  max(1, int(reach[i])))
            for i, ad in enumerate(campaign.ads) if impressions[i] > 0
        ]

    def deals(self, crm: str, day: dt.date) -> list[Deal]:
        """Deals created on ``day``, their state as of ``as_of``."""
        if day > self.s.as_of:
            return []
        if day not in self._live:
            self._live[day] = [c for p in self.s.platforms for c in self.campaigns(p, day, day)
                               if c.delivers_on(day)]
        live = self._live[day]
        rng = self.rng("deals", crm, day.toordinal())
        count = int(rng.poisson(0.4 * len(live) * self.dow[day.weekday()] + 0.3))
        return [self._deal(crm, day, i, live) for i in range(count)]

    def _deal(self, crm: str, day: dt.date, i: int, live: list[Campaign]) -> Deal:
        rng = self.rng("deal", crm, day.toordinal(), i)
        ordinal = day.toordinal()
        # kind 7/8, then the date ordinal and the index packed into the remaining fields
        number = self.number(7 + CRMS.index(crm), account=i // 100, slot=ordinal // 10_000,
                             k=ordinal % 10_000, group=i % 100)
        created = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(
            seconds=int(rng.integers(7 * 3600, 20 * 3600)))
        close = day + dt.timedelta(days=int(rng.integers(7, 76)))
        outcome = rng.random()
        source = medium = utm_campaign = None
        if live and rng.random() < 0.8:
            campaign = live[int(rng.integers(len(live)))]
            source, medium = UTM[campaign.account.platform]
            pick = rng.random()
            utm_campaign = (campaign.id if pick < 0.7 else campaign.name if pick < 0.9
                            else f"promo_{int(rng.integers(100, 999))}")
        currency = (self.org_currency if rng.random() < 0.7
                    else CURRENCIES[int(rng.integers(len(CURRENCIES)))])
        amount = float(round(rng.lognormal(8.3, 0.8), -1))
        name = f"{BRANDS[int(rng.integers(len(BRANDS)))]} - {THEMES[int(rng.integers(len(THEMES)))]} deal"
        # Draws that depend on as_of come last, so earlier fields never move with it.
        closed = close <= self.s.as_of and outcome < 0.65
        age = (self.s.as_of - day).days
        touched = (dt.datetime.combine(close, dt.time(15), dt.UTC) if closed
                   else created + dt.timedelta(days=int(rng.integers(0, age + 1))))
        return Deal(
            id=str(number), name=name, amount=amount, currency=currency, created_at=created,
            close_date=close, is_closed=closed, is_won=closed and outcome < 0.3,
            progress=min(0.95, age / (close - day).days), utm_source=source,
            utm_medium=medium, utm_campaign=utm_campaign, modified_at=touched,
        )
