"""The rule document (YAML in ``rules/rules/`` for the shipped pack; versioned per organisation).

    name: cpa_guardrail                     # id: lower case, digits, _
    title: CPA guardrail
    description: CPA over the last 7 days is 30% above target while spending
    enabled: true
    level: campaign                         # account / campaign / ad_group / ad
    scope: "campaign_status = 'active'"     # row filter over dimensions (formula language)
    params: {target_cpa: 25}                # named numbers the condition may use
    condition: "cpa[last_7d] > 1.3 * target_cpa AND spend[last_7d] > 200"
    show: ["cpa[last_7d]", "spend[last_7d]"]   # values recorded and shown (default: every windowed reference)
    trigger: transition                     # every (each evaluation that matches) / transition (false -> true)
    cooldown_hours: 24                      # per entity, between two firings
    max_actions: 25                         # more matching entities than this: no platform action at all
    settled_only: false                     # ignore days the platforms may still restate
    schedule: "0 7 * * *"                   # cron, for the scheduler
    actions:
      - {type: notify, channels: ["slack:team-slack", "email:ops@acme.example", "inapp:ana"],
         message: "CPA {cpa[last_7d]} on {campaign_name} (target {target_cpa})"}
      - {type: webhook, target: ops-hook}
      - {type: pause}
      - {type: change_budget, by_percent: -20, floor: 50}
    mode: dry_run                           # platform actions: dry_run / approval / execute
    approval_ttl_hours: 24
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
LEVELS: dict[str, tuple[str, ...]] = {
    "account": ("platform", "account_id", "account_name"),
    "campaign": ("platform", "campaign_id", "campaign_name"),  # CRM outcomes exist per campaign, not account
    "ad_group": ("platform", "account_id", "campaign_id", "campaign_name", "ad_group_id", "ad_group_name"),
    "ad": ("platform", "account_id", "campaign_id", "ad_group_id", "ad_id", "ad_name"),
}
ENTITY_ID = {"account": "account_id", "campaign": "campaign_id", "ad_group": "ad_group_id", "ad": "ad_id"}
PLATFORM_ACTIONS = ("pause", "resume", "set_budget", "change_budget")
CHANNELS = ("email", "slack", "inapp", "webhook")


class Action(BaseModel):
    """One action of a rule: notify, webhook, or a platform action (pause, resume, budgets)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["notify", "webhook", "pause", "resume", "set_budget", "change_budget"]
    channels: list[str] = Field(default_factory=list)  # notify: "slack:team-slack", "email:a@b.c", "inapp:ana"
    target: str | None = None  # webhook: a configured channel name
    message: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Action:
        if self.type == "notify":
            if not self.channels:
                raise ValueError("a notify action needs channels, e.g. ['slack:team-slack', 'inapp:ana']")
            for ch in self.channels:
                kind, _, target = ch.partition(":")
                if kind not in CHANNELS or not target:
                    raise ValueError(f"channel '{ch}' should be <{'|'.join(CHANNELS)}>:<target>")
        if self.type == "webhook" and not self.target:
            raise ValueError("a webhook action needs a target: the name of a configured webhook channel")
        return self

    @property
    def is_platform(self) -> bool:
        return self.type in PLATFORM_ACTIONS

    def spec(self) -> dict[str, Any]:
        """The platform action's own fields (amount, by_percent, floor, ceiling...)."""
        return self.model_dump(exclude={"channels", "target", "message"}, exclude_none=True)


class Rule(BaseModel):
    """A rule: which entities, under which condition, do what, how often."""

    model_config = ConfigDict(extra="forbid")

    name: str
    title: str = ""
    description: str = ""
    enabled: bool = True
    level: Literal["account", "campaign", "ad_group", "ad"] = "campaign"
    scope: str | None = None
    params: dict[str, float] = Field(default_factory=dict)
    condition: str
    show: list[str] = Field(default_factory=list)
    trigger: Literal["every", "transition"] = "transition"
    cooldown_hours: float = Field(24, ge=0)
    max_actions: int = Field(25, ge=0)
    settled_only: bool = False
    schedule: str = "0 7 * * *"
    actions: list[Action] = Field(default_factory=list)
    mode: Literal["dry_run", "approval", "execute"] = "dry_run"
    approval_ttl_hours: float = Field(24, gt=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("use lower case letters, digits and _, starting with a letter (e.g. cpa_guardrail)")
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, float]) -> dict[str, float]:
        for key in value:
            if not NAME.match(key):
                raise ValueError(f"parameter '{key}' is not a valid name (lower case, digits, _)")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"'{value}' is not a cron expression (e.g. '0 7 * * *' for 07:00 every day)")
        return value

    @model_validator(mode="after")
    def _platform_actions_need_an_entity(self) -> Rule:
        if self.level == "account" and any(a.is_platform for a in self.actions):
            raise ValueError("platform actions (pause, budgets) act on campaigns, ad groups or ads, "
                             "not on accounts: use level campaign or remove the action")
        return self

    @property
    def dims(self) -> tuple[str, ...]:
        return LEVELS[self.level]

    @property
    def entity_id(self) -> str:
        return ENTITY_ID[self.level]
