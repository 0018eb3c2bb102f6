"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from engine.messaging.broker import Publisher
from engine.messaging.consumer import Consumer
from engine.settings import Settings
from engine.store.task_batch import TaskBatcher

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
PUBLISHER = web.AppKey("publisher", Publisher)
CONSUMER = web.AppKey("consumer", Consumer)
TASK_BATCHER = web.AppKey("task_batcher", TaskBatcher)
