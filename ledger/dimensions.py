"""Tariff dimensions: what a charge is for. Revenue is recognized per dimension."""

from enum import StrEnum


class Dimension(StrEnum):
    """OCPI 2.2.1 price component types (TariffDimensionType) plus reservation fees."""

    ENERGY = "ENERGY"
    TIME = "TIME"
    PARKING_TIME = "PARKING_TIME"
    FLAT = "FLAT"
    RESERVATION = "RESERVATION"
