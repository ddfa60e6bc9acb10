FROM python:3.11-slim-bookworm
WORKDIR /opt/trunkline
COPY pyproject.toml setup.py README.md ./
COPY trunkline ./trunkline
COPY gateway ./gateway
COPY media ./media
COPY codecs ./codecs
COPY config ./config
RUN pip install --no-cache-dir .
# Inside a container the gateway must listen on all interfaces to be reachable: pass a config file
# that says so, e.g. docker run -v $PWD/my.yaml:/etc/trunkline.yaml trunkline --config /etc/trunkline.yaml
EXPOSE 5060/udp 5060/tcp 8080/tcp
ENTRYPOINT ["trunkline", "serve"]
