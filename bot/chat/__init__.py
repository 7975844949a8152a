"""Conversation: mendbot answers in chat through the Anthropic Messages API."""

from mendbot.chat.service import ChatReply, ChatService, split_message

__all__ = ["ChatReply", "ChatService", "split_message"]
