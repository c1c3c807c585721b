from openai import OpenAI


def test_sdk_round_trip(echo_gateway):
    gw, key = echo_gateway
    client = OpenAI(base_url=gw.api_url, api_key=key)
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "ping"}])
    assert reply.choices[0].message.content == "echo: ping"
