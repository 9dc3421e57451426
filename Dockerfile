FROM node:20-slim AS ui
WORKDIR /ui
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/index.html frontend/vite.config.ts frontend/tsconfig.json frontend/openapi.json ./
COPY frontend/public public
COPY frontend/src src
RUN npm run build

# clora service image (gateway, Celery worker and beat, trainer). GPU hosts use the `gpu` extra.
FROM python:3.11-slim
WORKDIR /srv/clora
COPY pyproject.toml README.md alembic.ini ./
COPY app app
COPY trainer trainer
COPY migrations migrations
COPY weights weights
COPY --from=ui /ui/dist frontend/dist
RUN pip install --no-cache-dir -e ".[gpu,trainer]"
ENV CLORA_ENVIRONMENT=production
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
