"""Meter values: normalization to Wh and the per-session meter that turns readings into intervals.

OCPP 1.6 sends sampled values as strings in Wh by default; OCPP 2.0.1 sends numbers with a unit
and a power-of-ten ``multiplier``. Everything here is pure and deterministic: the same events in
any order give the same ``MeteredSession``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from ledger.errors import ValidationError
from ledger.events import ChargingState, MeterValueRecorded, SampledValue

ENERGY_REGISTER = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
CURRENT = "Current.Import"

# Unit -> factor to the base unit (Wh, kW, A). OCPP UnitOfMeasure names (1.6 7.47, 2.0.1 2.54).
_ENERGY_UNITS = {"Wh": Decimal(1), "kWh": Decimal(1000)}
_POWER_UNITS = {"W": Decimal("0.001"), "kW": Decimal(1)}
_CURRENT_UNITS = {"A": Decimal(1)}
_NEUTRAL = "N"
#: OCPP 1.6 ValueFormat of a value that is a signed record (OCMF), not a number.
_SIGNED_DATA = "SignedData"


class InvalidMeterValue(ValidationError):
    """A sampled value that cannot be read (not a number, wrong unit for its measurand)."""

    code = "INVALID_METER_VALUE"


class MeterRegisterDecreased(ValidationError):
    """The energy register went down within a session (docs/sessions.md)."""

    code = "METER_REGISTER_DECREASED"


class StopBeforeStart(ValidationError):
    """A SessionStopped whose stopped_at is before its SessionStarted's start."""

    code = "STOP_BEFORE_START"


class ReadingOutsideSession(ValidationError):
    """A meter value sampled before its session started (or after it stopped)."""

    code = "METER_READING_OUTSIDE_SESSION"


class MeterFlagCode(StrEnum):
    """Reason codes for readings the meter did not take at face value."""

    METER_REGISTER_DECREASED = "METER_REGISTER_DECREASED"
    METER_REGISTER_RESET = "METER_REGISTER_RESET"
    METER_IMPLAUSIBLE_ENERGY = "METER_IMPLAUSIBLE_ENERGY"
    METER_READING_OUTSIDE_SESSION = "METER_READING_OUTSIDE_SESSION"
    METER_CONFLICTING_DUPLICATE = "METER_CONFLICTING_DUPLICATE"
    PARTIAL_PHASES = "PARTIAL_PHASES"
    # Signed meter values (ledger.sessions.signed): blocking only where the network's policy
    # holds them (SessionsConfig.signed_hold_networks).
    SIGNED_DATA_INVALID = "SIGNED_DATA_INVALID"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    METER_KEY_UNREGISTERED = "METER_KEY_UNREGISTERED"
    METER_KEY_MISMATCH = "METER_KEY_MISMATCH"
    SIGNED_ENERGY_MISMATCH = "SIGNED_ENERGY_MISMATCH"
    # Not about the meter but about the bill (ledger.sessions.billing.check_vat): a line taxed
    # at another rate than the country of supply's; blocking only where the network holds them.
    VAT_RATE_MISMATCH = "VAT_RATE_MISMATCH"


METER_ANOMALIES = frozenset(MeterFlagCode) - {
    MeterFlagCode.VAT_RATE_MISMATCH,
    MeterFlagCode.PARTIAL_PHASES,
}
"""The flags about the meter's readings themselves, which a CDR carries for the fraud rules
(a VAT mismatch is about the bill; partial phases is how a car charges)."""

#: Flags after which the energy total is not the register's word: hold the CDR for review.
#: A reading outside the session or of only some phases says nothing sure about the session's
#: energy, so it is never clamped or summed into a bill without a person's review.
BLOCKING_FLAGS = frozenset(
    {
        MeterFlagCode.METER_REGISTER_DECREASED,
        MeterFlagCode.METER_REGISTER_RESET,
        MeterFlagCode.METER_IMPLAUSIBLE_ENERGY,
        MeterFlagCode.METER_READING_OUTSIDE_SESSION,
        MeterFlagCode.PARTIAL_PHASES,
    }
)


@dataclass(frozen=True, slots=True)
class MeterFlag:
    code: MeterFlagCode
    session_id: str
    seq_no: int | None
    sampled_at: datetime | None
    detail: str


@dataclass(frozen=True, slots=True)
class MeteredInterval:
    """A stretch of the session with the energy delivered in it (Wh) and whether the EV charged.

    ``power_kw`` / ``current_a`` feed OCPI power/current restrictions; None means "not measured"
    (pricing then uses the average power ``energy / duration`` and treats current as unknown).
    """

    start: datetime
    end: datetime
    energy_wh: Decimal | int
    charging: bool = True
    power_kw: Decimal | None = None
    current_a: Decimal | None = None


@dataclass(frozen=True, slots=True)
class MeteredSession:
    """What pricing needs: UTC bounds, the location's IANA zone and contiguous intervals."""

    session_id: str
    started_at: datetime
    stopped_at: datetime
    time_zone: str
    intervals: tuple[MeteredInterval, ...]
    flags: tuple[MeterFlag, ...] = ()

    @property
    def energy_wh(self) -> Decimal:
        return sum((Decimal(i.energy_wh) for i in self.intervals), Decimal(0))

    @property
    def blocking_flags(self) -> tuple[MeterFlag, ...]:
        return tuple(f for f in self.flags if f.code in BLOCKING_FLAGS)


# ------------------------------------------------------------------------------ normalization
def _decimal(sample: SampledValue) -> Decimal:
    try:
        value = Decimal(sample.value.strip())
    except (InvalidOperation, AttributeError):
        raise InvalidMeterValue(
            f"sampled value is not a number: {sample.value!r}", measurand=sample.measurand
        ) from None
    if not value.is_finite():
        raise InvalidMeterValue(f"sampled value is not finite: {sample.value!r}")
    if sample.multiplier:
        value = value.scaleb(sample.multiplier)
    return value


def _measure(
    samples: Iterable[SampledValue],
    measurand: str,
    units: dict[str, Decimal],
    default_unit: str,
) -> Decimal | None:
    """Total of one measurand in its base unit: the phase-less sample when present, else the sum
    of the per-phase samples (neutral excluded). None when the measurand is absent."""
    total: Decimal | None = None
    phases: dict[str, Decimal] = {}
    for s in samples:
        if (s.measurand or ENERGY_REGISTER) != measurand or s.format == _SIGNED_DATA:
            continue
        unit = s.unit or default_unit
        factor = units.get(unit)
        if factor is None:
            raise InvalidMeterValue(
                f"unit {unit!r} does not fit {measurand}", measurand=measurand, unit=unit
            )
        value = _decimal(s) * factor
        if s.phase is None:
            if total is None:
                total = value
        elif s.phase != _NEUTRAL:
            phases.setdefault(s.phase, value)
    if total is not None:
        return total
    return sum(phases.values(), Decimal(0)) if phases else None


def energy_register_wh(samples: Iterable[SampledValue]) -> Decimal | None:
    """The Energy.Active.Import.Register reading in Wh (a missing measurand means this one).

    OCPP 1.6 string Wh, 2.0.1 numbers with unit and ``multiplier`` (value x 10^multiplier), kWh,
    and per-phase values summed when no total is sent. Non-energy measurands are ignored.
    Raises InvalidMeterValue for unreadable values or non-energy units.
    """
    return _measure(samples, ENERGY_REGISTER, _ENERGY_UNITS, "Wh")


def energy_phases(samples: Iterable[SampledValue]) -> tuple[str, ...]:
    """The phases whose registers ``energy_register_wh`` summed, sorted; () when the station
    sent a phase-less total (or no energy register), so the reading is the whole meter."""
    phases: set[str] = set()
    for s in samples:
        if (s.measurand or ENERGY_REGISTER) != ENERGY_REGISTER or s.format == _SIGNED_DATA:
            continue
        if s.phase is None:
            return ()
        if s.phase != _NEUTRAL:
            phases.add(s.phase)
    return tuple(sorted(phases))


# A three-phase meter reports each line to neutral (L1 or L1-N, ...) or each line to line.
_ALL_THREE = (frozenset({"L1", "L2", "L3"}), frozenset({"L1-L2", "L2-L3", "L3-L1"}))


def phases_complete(phases: Iterable[str], single_phase: bool) -> bool:
    """Whether per-phase energy values add up to the connector's total: always for a phase-less
    total (no phases) or a connector declared single-phase; else every line of a three-phase
    connector must be there (L1, L2 and L3, "-N" suffixes alike)."""
    lines = {p.removesuffix("-N") for p in phases}
    if not lines or single_phase:
        return True
    return any(needed <= lines for needed in _ALL_THREE)


def power_kw(samples: Iterable[SampledValue]) -> Decimal | None:
    """Power.Active.Import in kW (W by default), summed over phases when no total is sent."""
    return _measure(samples, POWER, _POWER_UNITS, "W")


def current_a(samples: Iterable[SampledValue]) -> Decimal | None:
    """Current.Import in A summed over all phases (what OCPI min/max_current compares)."""
    return _measure(samples, CURRENT, _CURRENT_UNITS, "A")


# ------------------------------------------------------------------------------ session meter
class RecordResult(StrEnum):
    APPLIED = "APPLIED"
    DUPLICATE = "DUPLICATE"


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One normalized reading of a session."""

    seq_no: int
    sampled_at: datetime
    register_wh: Decimal | None
    power_kw: Decimal | None = None
    current_a: Decimal | None = None
    #: The phases summed into ``register_wh`` (``energy_phases``); () for a phase-less total.
    energy_phases: tuple[str, ...] = ()


@dataclass
class _Point:
    at: datetime
    energy_wh: Decimal
    power_kw: Decimal | None = None
    current_a: Decimal | None = None


@dataclass
class SessionMeter:
    """Accumulates one session's meter values and charging states, in any order, deduplicated.

    ``max_power_kw`` bounds plausible energy (an interval implying more is flagged);
    a register drop to at most ``reset_threshold_wh`` is read as a meter reset, any other drop as
    a decrease. Neither is ever billed: the dropped reading contributes no energy. Nor is a
    reading sampled outside [start, stop] (flagged, not clamped) or one of only some phases of a
    connector not declared ``single_phase`` (flagged; its register is not the total).
    """

    session_id: str
    started_at: datetime
    meter_start_wh: Decimal | int | None = None
    max_power_kw: Decimal = Decimal(400)
    reset_threshold_wh: Decimal = Decimal(1000)
    single_phase: bool = False
    _readings: dict[tuple[str, str, int], MeterReading] = field(default_factory=dict, repr=False)
    _states: set[tuple[datetime, ChargingState]] = field(default_factory=set, repr=False)
    _conflicts: list[MeterFlag] = field(default_factory=list, repr=False)

    def record(self, event: MeterValueRecorded) -> RecordResult:
        """Add a MeterValueRecorded; DUPLICATE when (station, transaction, seq_no) was seen."""
        reading = MeterReading(
            seq_no=event.seq_no,
            sampled_at=event.sampled_at,
            register_wh=energy_register_wh(event.samples),
            power_kw=power_kw(event.samples),
            current_a=current_a(event.samples),
            energy_phases=energy_phases(event.samples),
        )
        return self.record_reading(event.station_id, event.transaction_id, reading)

    def record_reading(
        self, station_id: str, transaction_id: str, reading: MeterReading
    ) -> RecordResult:
        key = (station_id, transaction_id, reading.seq_no)
        seen = self._readings.get(key)
        if seen is not None:
            if seen != reading:
                self._conflicts.append(
                    MeterFlag(
                        MeterFlagCode.METER_CONFLICTING_DUPLICATE,
                        self.session_id,
                        reading.seq_no,
                        reading.sampled_at,
                        "same seq_no with different content; the first one is kept",
                    )
                )
            return RecordResult.DUPLICATE
        self._readings[key] = reading
        return RecordResult.APPLIED

    def record_state(self, state: ChargingState, changed_at: datetime) -> None:
        """Add a ChargingStateChanged (idempotent)."""
        self._states.add((changed_at, state))

    @property
    def readings(self) -> list[MeterReading]:
        """Readings ordered by sampled_at (seq_no breaks ties)."""
        return sorted(self._readings.values(), key=lambda r: (r.sampled_at, r.seq_no))

    def metered_session(
        self, stopped_at: datetime, time_zone: str, meter_stop_wh: Decimal | int | None = None
    ) -> MeteredSession:
        """The session as contiguous intervals from start to stop, with every flag raised."""
        check_stop(self.session_id, self.started_at, stopped_at)
        flags: list[MeterFlag] = list(self._conflicts)
        points = self._energy_points(stopped_at, meter_stop_wh, flags)
        intervals = _split_by_state(
            self.started_at, points, _charging_changes(self._states, self.started_at, stopped_at)
        )
        return MeteredSession(
            self.session_id, self.started_at, stopped_at, time_zone, tuple(intervals), tuple(flags)
        )

    def _energy_points(
        self, stopped_at: datetime, meter_stop_wh: Decimal | int | None, flags: list[MeterFlag]
    ) -> list[_Point]:
        """Energy delivered up to each reading instant, after dropping bad register values."""
        readings: list[tuple[int, datetime, Decimal | None, MeterReading | None]] = [
            (r.seq_no, r.sampled_at, r.register_wh, r) for r in self.readings
        ]
        if meter_stop_wh is not None:
            readings.append((-1, stopped_at, Decimal(meter_stop_wh), None))
        baseline = None if self.meter_start_wh is None else Decimal(self.meter_start_wh)
        last_at = self.started_at
        points: list[_Point] = []
        for seq_no, sampled_at, register, reading in readings:
            seq = None if seq_no < 0 else seq_no
            at = sampled_at
            if not self.started_at <= sampled_at <= stopped_at:
                flags.append(
                    self._flag(
                        MeterFlagCode.METER_READING_OUTSIDE_SESSION,
                        seq,
                        sampled_at,
                        f"sampled at {sampled_at.isoformat()}, outside the session "
                        f"({self.started_at.isoformat()} to {stopped_at.isoformat()}); "
                        "not billed",
                    )
                )
                continue
            if reading is not None and not phases_complete(
                reading.energy_phases, self.single_phase
            ):
                flags.append(
                    self._flag(
                        MeterFlagCode.PARTIAL_PHASES,
                        seq,
                        sampled_at,
                        f"energy of phases {','.join(reading.energy_phases)} only "
                        f"({register} Wh) on a connector not declared single-phase; "
                        "not billed as the total",
                    )
                )
                register = None
            delta = Decimal(0)
            if register is not None:
                if baseline is None:
                    baseline = register
                elif register >= baseline:
                    delta, baseline = register - baseline, register
                elif register <= self.reset_threshold_wh:
                    flags.append(
                        self._flag(
                            MeterFlagCode.METER_REGISTER_RESET,
                            seq,
                            sampled_at,
                            f"register fell from {baseline} Wh to {register} Wh; "
                            "energy across the reset is not billed",
                        )
                    )
                    baseline = register
                else:
                    flags.append(
                        self._flag(
                            MeterFlagCode.METER_REGISTER_DECREASED,
                            seq,
                            sampled_at,
                            f"register fell from {baseline} Wh to {register} Wh; "
                            "the reading is ignored",
                        )
                    )
            seconds = Decimal((at - last_at) / timedelta(microseconds=1)).scaleb(-6)
            if delta > 0 and (seconds == 0 or delta * Decimal("3.6") / seconds > self.max_power_kw):
                flags.append(
                    self._flag(
                        MeterFlagCode.METER_IMPLAUSIBLE_ENERGY,
                        seq,
                        sampled_at,
                        f"{delta} Wh in {seconds} s exceeds {self.max_power_kw} kW",
                    )
                )
            if points and points[-1].at == at:
                points[-1].energy_wh += delta
            else:
                points.append(_Point(at, delta))
            if reading is not None:
                points[-1].power_kw = reading.power_kw
                points[-1].current_a = reading.current_a
            last_at = at
        if not points or points[-1].at != stopped_at:
            points.append(_Point(stopped_at, Decimal(0)))
        return points

    def _flag(
        self, code: MeterFlagCode, seq_no: int | None, at: datetime, detail: str
    ) -> MeterFlag:
        return MeterFlag(code, self.session_id, seq_no, at, detail)

    def require_clean(self, session: MeteredSession) -> None:
        """Raise MeterRegisterDecreased when the register went down (reset or decrease)."""
        for flag in session.blocking_flags:
            if flag.code in (
                MeterFlagCode.METER_REGISTER_DECREASED,
                MeterFlagCode.METER_REGISTER_RESET,
            ):
                raise MeterRegisterDecreased(
                    flag.detail, session_id=self.session_id, seq_no=flag.seq_no, reason=flag.code
                )


def check_stop(session_id: str, started_at: datetime, stopped_at: datetime) -> None:
    """Raise StopBeforeStart when ``stopped_at`` is before ``started_at``."""
    if stopped_at < started_at:
        raise StopBeforeStart(
            f"SessionStopped.stopped_at {stopped_at.isoformat()} is before "
            f"SessionStarted.started_at {started_at.isoformat()}; check the station clock and "
            "send a corrected SessionStopped",
            session_id=session_id,
            started_at=started_at.isoformat(),
            stopped_at=stopped_at.isoformat(),
        )


def _charging_changes(
    states: Iterable[tuple[datetime, ChargingState]], start: datetime, stop: datetime
) -> list[tuple[datetime, bool]]:
    """Instants where the charging flag changes. Before the first Charging the session counts
    as charging (setting up); after it, any state other than Charging is parking."""
    changes: list[tuple[datetime, bool]] = []
    charged = False
    current = True
    for at, state in sorted(states, key=lambda s: (s[0], s[1].value)):
        if state is ChargingState.Charging:
            charged, now = True, True
        else:
            now = not charged
        if now != current:
            changes.append((min(max(at, start), stop), now))
            current = now
    return changes


def _split_by_state(
    start: datetime, points: Sequence[_Point], changes: Sequence[tuple[datetime, bool]]
) -> list[MeteredInterval]:
    """Cut meter intervals at charging-state changes; energy goes to the charging parts, in
    proportion to their duration (to all parts when none of them charged)."""
    intervals: list[MeteredInterval] = []
    k = 0
    charging = True
    last = start
    for p in points:
        parts: list[tuple[datetime, datetime, bool]] = []
        cursor = last
        while k < len(changes) and changes[k][0] <= p.at:
            at, flag = changes[k]
            if at > cursor:
                parts.append((cursor, at, charging))
                cursor = at
            charging = flag
            k += 1
        if p.at > cursor or not parts:
            parts.append((cursor, p.at, charging))
        intervals.extend(_share_energy(parts, p))
        last = p.at
    return [i for i in intervals if i.end > i.start or i.energy_wh]


def _share_energy(parts: list[tuple[datetime, datetime, bool]], p: _Point) -> list[MeteredInterval]:
    takers = [part for part in parts if part[2]] or parts
    span = sum(((b - a) for a, b, _ in takers), timedelta(0))
    result: list[MeteredInterval] = []
    left = p.energy_wh
    for a, b, charging in parts:
        share = Decimal(0)
        if (a, b, charging) in takers and left:
            if (a, b, charging) == takers[-1]:
                share = left
            elif span:
                share = (
                    p.energy_wh
                    * Decimal((b - a) / timedelta(microseconds=1))
                    / Decimal(span / timedelta(microseconds=1))
                )
            left -= share
        result.append(MeteredInterval(a, b, share, charging, p.power_kw, p.current_a))
    return result
