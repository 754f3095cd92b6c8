FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gatewaysite gatewaysite
COPY routes routes
COPY providers providers
COPY usage usage
COPY gateway_client gateway_client
COPY templates templates
COPY manage.py ./
RUN pip install --no-cache-dir . \
 && DEBUG=true python manage.py collectstatic --noinput --verbosity 0
EXPOSE 8000
CMD ["uvicorn", "gatewaysite.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--no-access-log"]
