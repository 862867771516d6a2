"""Ningbo's districts: the centre points the dashboard draws and the simulation places people around."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class District:
    name: str
    name_zh: str
    lat: float
    lon: float
    spread_km: float
    # Resident population in tens of thousands: how the simulation weighs where people ask for help.
    population_10k: int


# In the order of the seed's district table.
DISTRICTS: tuple[District, ...] = (
    District("Haishu", "海曙区", 29.87, 121.50, 9, 105),
    District("Jiangbei", "江北区", 29.93, 121.53, 7, 49),
    District("Yinzhou", "鄞州区", 29.82, 121.58, 10, 161),
    District("Zhenhai", "镇海区", 29.96, 121.68, 7, 50),
    District("Beilun", "北仑区", 29.90, 121.85, 12, 82),
    District("Fenghua", "奉化区", 29.66, 121.41, 12, 58),
    District("Yuyao", "余姚市", 30.04, 121.15, 15, 125),
    District("Cixi", "慈溪市", 30.17, 121.27, 15, 183),
    District("Ninghai", "宁海县", 29.29, 121.43, 15, 70),
    District("Xiangshan", "象山县", 29.48, 121.87, 14, 57),
    District("Hangzhou Bay New Area", "杭州湾新区", 30.31, 121.18, 8, 20),
)
