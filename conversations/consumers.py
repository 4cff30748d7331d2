from channels.generic.websocket import AsyncJsonWebsocketConsumer


class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # 4401: an application close code, so the browser script knows not to retry.
            await self.close(code=4401)
            return
        await self.accept()
