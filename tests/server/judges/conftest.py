from tests.openai_server import openai_server, openai_server_process

__all__ = ["openai_server", "openai_server_process"]
