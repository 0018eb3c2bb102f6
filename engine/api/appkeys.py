"""Typed keys for what the aiohttp application holds; ``engine/app.py`` fills them."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from engine.api.active import ActiveConnections
from engine.api.actors import ErpActors
from engine.api.auth import Authenticator
from engine.api.intake import TaskIntake
from engine.messaging.broker import Publisher
from engine.messaging.consumer import Consumer
from engine.observability.metrics import Metrics
from engine.settings import Settings
from engine.store.finished import TaskWaiter
from engine.store.task_batch import TaskBatcher

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
POOL = web.AppKey("pool", asyncpg.Pool)
PUBLISHER = web.AppKey("publisher", Publisher)
CONSUMER = web.AppKey("consumer", Consumer)
TASK_BATCHER = web.AppKey("task_batcher", TaskBatcher)
TASK_INTAKE = web.AppKey("task_intake", TaskIntake)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
TASK_WAITER = web.AppKey("task_waiter", TaskWaiter)
ERP_ACTORS = web.AppKey("erp_actors", ErpActors)
ACTIVE_CONNECTIONS = web.AppKey("active_connections", ActiveConnections)
