"""The messaging service: outbound messages through a :class:`MessageSender`, inbound ones to the
number's ``sms_url`` webhook, and the TwiML ``<Message>`` replies it answers with.

Outbound (``send``): the message is stored ``queued`` and delivered in the background:
``sending``, then on the SIP final response ``sent`` + ``delivered`` (2xx) or ``undelivered``/
``failed`` with Twilio's 300xx code. Each change is stored and, when the message has a
``StatusCallback``, reported through :class:`CallbackSender` (Twilio reports every status after
the initial one), one callback at a time per message so they arrive in order.

Inbound (``receive``): the message is checked and answered at once (so the SIP answer does not
wait for the customer's web app), then stored (direction ``inbound``, status ``received``) and
posted, signed, to the number's ``sms_url``; every ``<Message>`` of the TwiML answer is sent
back, by default to the sender and from the number it wrote to, and stored (``outbound-reply``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from trunkline.gateway.api.control import MessageSender, NoRouteError
from trunkline.gateway.config import Config, NumberRoute
from trunkline.gateway.messaging.records import (
    UNKNOWN_ERROR,
    UNREACHABLE_HANDSET,
    Direction,
    Message,
    MessageStatus,
    delivery_error,
)
from trunkline.gateway.messaging.segments import MAX_BODY_CHARS
from trunkline.gateway.messaging.sip import MessageFormatError, read_message
from trunkline.gateway.sip import SipRequest
from trunkline.gateway.store import SqliteStore
from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.parser import TwimlError, parse_twiml
from trunkline.gateway.twiml.webhooks import CallbackSender, WebhookClient, WebhookError

log = logging.getLogger(__name__)


class MessagingService:
    """Sends, receives and records messages for the accounts of ``config``."""

    def __init__(
        self,
        config: Config,
        store: SqliteStore,
        sender: MessageSender,
        webhooks: WebhookClient,
        callbacks: CallbackSender,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.sender = sender
        self.webhooks = webhooks
        self.callbacks = callbacks
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._reports: dict[str, asyncio.Task[None]] = {}

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every delivery and inbound webhook in progress is done (shutdown, tests)."""
        while self._tasks:
            done, _ = await asyncio.wait(list(self._tasks), timeout=timeout)
            if not done:
                return

    def _token(self, account_sid: str) -> str:
        account = self.config.account(account_sid)
        if account is None:
            raise KeyError(f"unknown account {account_sid}")
        return account.auth_token

    # Outbound
    async def send(
        self,
        account_sid: str,
        from_: str,
        to: str,
        body: str,
        *,
        status_callback: str | None = None,
        status_callback_method: str = "POST",
        messaging_service_sid: str | None = None,
        direction: Direction = Direction.OUTBOUND_API,
    ) -> Message:
        """Store a ``queued`` message and start delivering it; returns at once."""
        now = self.clock()
        message = Message(
            account_sid=account_sid,
            from_=from_,
            to=to,
            body=body,
            direction=direction,
            messaging_service_sid=messaging_service_sid,
            status_callback=status_callback,
            status_callback_method=status_callback_method,
            created=now,
            updated=now,
        )
        await self.store.put("messages", message.to_json())
        self._spawn(self._deliver(message))
        return message

    async def _move(self, message: Message, status: MessageStatus, *, error_code: int | None = None) -> None:
        if not message.transition(status, self.clock(), error_code=error_code):
            return
        await self.store.put("messages", message.to_json())
        if message.status_callback:
            self._report(message, message.status_callback, message.callback_params())

    def _report(self, message: Message, url: str, params: list[tuple[str, str]]) -> None:
        """Send one status callback after the message's previous one was answered, so that the
        app sees ``sending``, ``sent``, ``delivered`` in that order."""
        previous = self._reports.get(message.sid)
        method, token = message.status_callback_method, self._token(message.account_sid)

        async def report() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            await self.callbacks.send(url, method, params, token)

        task = asyncio.get_running_loop().create_task(report())
        self._reports[message.sid] = task
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            if self._reports.get(message.sid) is finished:
                del self._reports[message.sid]

        task.add_done_callback(done)

    async def _deliver(self, message: Message) -> None:
        try:
            await self._move(message, MessageStatus.SENDING)
            try:
                code = await self.sender.send_message(
                    message.account_sid, message.from_, message.to, message.body
                )
            except NoRouteError as exc:
                log.info("message %s: no route to %s (%s)", message.sid, message.to, exc)
                await self._move(message, MessageStatus.UNDELIVERED, error_code=UNREACHABLE_HANDSET)
                return
            except TimeoutError:
                log.info("message %s to %s: no final response", message.sid, message.to)
                await self._move(message, MessageStatus.FAILED, error_code=UNKNOWN_ERROR)
                return
            message.sip_status = code
            if 200 <= code < 300:
                await self._move(message, MessageStatus.SENT)
                await self._move(message, MessageStatus.DELIVERED)
            else:
                status, error = delivery_error(code)
                await self._move(message, status, error_code=error)
        except Exception:
            log.exception("message %s: delivery failed", message.sid)
            if not message.status.is_final:
                await self._move(message, MessageStatus.FAILED, error_code=UNKNOWN_ERROR)

    # Inbound
    def receive(
        self,
        account_sid: str | None,
        from_: str,
        to: str,
        body: str,
        content_type: str = "text/plain;charset=UTF-8",
    ) -> int:
        """Accept an inbound message to ``to``; return the SIP status to answer the MESSAGE with.

        404 when no ``numbers`` route (or one of another account) matches ``to``, 415 for a body
        that is not plain text (RFC 3428 section 7), 413 for more than 1,600 characters (Twilio's
        limit, error 21617), else 200 and the webhook runs in the background (:meth:`drain`).
        """
        route = self.config.route(to)
        if route is None or (account_sid is not None and route.account != account_sid):
            return 404
        if content_type.split(";", 1)[0].strip().lower() != "text/plain":
            return 415
        if len(body) > MAX_BODY_CHARS:
            return 413
        now = self.clock()
        message = Message(
            account_sid=route.account,
            from_=from_,
            to=to,
            body=body,
            direction=Direction.INBOUND,
            status=MessageStatus.RECEIVED,
            created=now,
            updated=now,
            sent_at=now,
        )
        self._spawn(self._handle_inbound(message, route))
        return 200

    def receive_sip(self, request: SipRequest, account_sid: str | None = None) -> int:
        """:meth:`receive` for an inbound out-of-dialog MESSAGE request (what the UA core's
        MESSAGE handler calls); the status to answer it with (RFC 3428 section 7)."""
        try:
            message = read_message(request)
        except MessageFormatError as exc:
            log.info("inbound MESSAGE %s refused: %s", request.headers.get("Call-ID"), exc)
            return exc.status
        return self.receive(account_sid, message.from_, message.to, message.body, message.content_type)

    async def _handle_inbound(self, message: Message, route: NumberRoute) -> None:
        try:
            await self.store.put("messages", message.to_json())
            if not route.sms_url:
                log.info("message %s to %s: the number has no sms_url", message.sid, message.to)
                return
            token = self._token(message.account_sid)
            try:
                response = await self.webhooks.request(
                    route.sms_url, route.sms_method, message.webhook_params(), token
                )
            except WebhookError as exc:
                log.warning(
                    "message %s: sms_url %s failed: %s %s", message.sid, exc.url, exc.code, exc.message
                )
                return
            if not response.body.strip():
                return
            try:
                document = parse_twiml(response.body)
            except TwimlError as exc:
                log.warning("message %s: reply TwiML rejected: %s", message.sid, exc)
                return
            for verb in document.verbs:
                if isinstance(verb, v.Message):
                    await self._reply(message, verb)
        except Exception:
            log.exception("message %s: inbound handling failed", message.sid)

    async def _reply(self, inbound: Message, verb: v.Message) -> None:
        if not verb.body or len(verb.body) > MAX_BODY_CHARS:
            log.warning("message %s: <Message> body empty or over %d characters", inbound.sid, MAX_BODY_CHARS)
            return
        await self.send(
            inbound.account_sid,
            verb.from_ or inbound.to,
            verb.to or inbound.from_,
            verb.body,
            status_callback=verb.status_callback,
            direction=Direction.OUTBOUND_REPLY,
        )
